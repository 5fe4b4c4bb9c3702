{{ config(materialized='table') }}
-- Refused Kafka records per reason, for the dashboard's health page: a table, so the
-- dashboard's read-only connection needs neither the delta extension nor S3 keys.
select
    reason,
    count(*) as records,
    min(ingested_at) as first_seen_at,
    max(ingested_at) as last_seen_at
from {{ ref('stg_quarantine') }}
group by 1
