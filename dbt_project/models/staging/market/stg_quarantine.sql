select
    reason,
    kafka_topic,
    kafka_partition,
    kafka_offset,
    raw_value,
    ingested_at
from {{ source('lake', 'quarantine_market') }}
