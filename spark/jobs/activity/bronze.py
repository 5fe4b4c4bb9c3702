"""Bronze of the web activity pipeline: Kafka `user_activity` -> three exactly-once sinks.

The kit's event bronze (spark/event_bronze.py: validation, quarantine, late events and
repeated event ids dropped and counted) writes Delta `activity_events` (partitioned by
event_date) and `quarantine_activity`; then each accepted event plus `processing_time` goes
to Kafka `enriched_activity` in one Kafka transaction that also records the batch id
(spark/kafka_sink.py). The window and session queries read `activity_events`.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.layout import Layout
from lakehouse.pipelines.activity import (
    ACTIVITY_TOPIC,
    BRONZE_QUERY,
    ENRICHED_TOPIC,
    EVENT,
    EVENTS_TABLE,
    QUARANTINE_TABLE,
)
from lakehouse.settings import Settings
from spark.checkpoints import sink_identity
from spark.event_bronze import EventBronze

BRONZE = EventBronze(EVENT, BRONZE_QUERY, (ACTIVITY_TOPIC,), EVENTS_TABLE, QUARANTINE_TABLE)
ENRICHED_FIELDS = ("event_id", "user_id", "session_id", "event_type", "page", "schema_version")
_ISO_UTC_MS = "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"  # the session time zone is UTC


def enriched(events_out: DataFrame) -> DataFrame:
    """(key, value) of `enriched_activity`: the event as JSON plus when it was processed."""
    value = F.to_json(
        F.struct(
            *ENRICHED_FIELDS,
            F.date_format("event_time", _ISO_UTC_MS).alias("event_time"),
            F.date_format(F.current_timestamp(), _ISO_UTC_MS).alias("processing_time"),
        )
    )
    return events_out.select(F.col("user_id").alias("key"), value.alias("value"))


def ensure_tables(spark: SparkSession, layout: Layout) -> None:
    BRONZE.ensure_tables(spark, layout)


def start(
    spark: SparkSession,
    settings: Settings,
    layout: Layout,
    *,
    trigger: dict,
    watermark: str,
    max_offsets: int | None = None,
):
    from spark.kafka_sink import TransactionalTopicSink

    sinks: list[TransactionalTopicSink] = []

    def to_enriched_topic(events_out: DataFrame, batch_id: int, checkpoint: str) -> None:
        if not sinks:  # after the query started: its checkpoint names the sink
            sink = sink_identity(BRONZE_QUERY, checkpoint)
            sinks.append(TransactionalTopicSink(settings, layout.topic(ENRICHED_TOPIC), sink))
        rows = enriched(events_out).toArrow()
        records = zip(
            (k.encode() for k in rows.column("key").to_pylist()),
            (v.encode() for v in rows.column("value").to_pylist()),
            strict=True,
        )
        sinks[0].write(batch_id, records)

    return BRONZE.start(
        spark,
        settings,
        layout,
        trigger=trigger,
        watermark=watermark,
        max_offsets=max_offsets,
        extra_sink=to_enriched_topic,
    )
