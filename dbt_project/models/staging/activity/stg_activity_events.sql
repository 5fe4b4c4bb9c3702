-- One row per user event, typed. Bronze drops duplicate event ids within its watermark; a
-- duplicate that arrives later than that is dropped here (the first one ingested wins).
select
    cast(event_id as varchar) as event_id,
    cast(user_id as varchar) as user_id,
    cast(session_id as varchar) as session_id,
    cast(event_type as varchar) as event_type,
    cast(page as varchar) as page,
    cast(event_time as timestamptz) as event_time,
    cast(event_date as date) as event_date,
    cast(schema_version as bigint) as schema_version,
    kafka_topic,
    kafka_partition,
    kafka_offset,
    cast(ingested_at as timestamptz) as ingested_at
from {{ source('activity_lake', 'activity_events') }}
qualify row_number() over (
    partition by event_id order by ingested_at, kafka_partition, kafka_offset
) = 1
