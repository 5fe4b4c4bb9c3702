{{ config(materialized='table') }}
-- Per event day (UTC): who was active and how much. A session is a (user_id, session_id)
-- pair; one that spans midnight counts on both days. ended_sessions counts the sessions
-- that sent session_end that day (the rest ended by the 15-minute inactivity timeout or are
-- still open).
select
    event_date,
    count(distinct user_id) as users,
    count(distinct (user_id, session_id)) as sessions,
    count(*) as events,
    count(*) filter (where event_type = 'page_view') as page_views,
    count(distinct page) filter (where event_type = 'page_view') as pages_viewed,
    count(distinct (user_id, session_id)) filter (where event_type = 'session_end')
        as ended_sessions,
    min(event_time) as first_event_at,
    max(event_time) as last_event_at
from {{ ref('stg_activity_events') }}
group by 1
