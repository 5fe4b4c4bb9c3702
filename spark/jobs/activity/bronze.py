"""Bronze of the web activity pipeline: Kafka `user_activity` -> three exactly-once sinks.

extract: the Kafka source (offsets in the checkpoint).
transform: the kit's bronze routing (spark/bronze.py) with the activity contract; the valid
  events behind the watermark are dropped and counted by Spark (numRowsDroppedByWatermark),
  and a repeated event id within the watermark is dropped once and counted
  (numDroppedDuplicateRows): both land in stream_progress. Invalid records are not subject
  to either: they go to the quarantine with the reason and the raw payload.
load: one foreachBatch writes
  - the events to Delta `activity_events` (partitioned by event_date) and the refused
    records to `quarantine_activity`, with Delta's idempotent (query, batch id) transaction;
  - each event plus `processing_time` to Kafka `enriched_activity` in one Kafka transaction
    that also records the batch id (spark/kafka_sink.py).
Deduplication and lateness are decided here, once, so every sink and every downstream query
sees the same events; the window and session queries read `activity_events`.

Why bronze also drops by the batch's own watermark: Spark's operators drop a row as late by
the watermark of the *previous* batch (so chained operators agree), which lags the batch's
own watermark by one batch. A downstream query that has read bronze's earlier commits
(plus an empty batch that moved its watermark) may already stand at bronze's current
watermark, and would drop an event bronze accepted. So bronze keeps an event only if it is
after the watermark of its own batch (the offset log records it), drops the rest, and counts
them with Spark's drops (stream_progress.rows_dropped_by_watermark). A downstream watermark
is then never past an event it has yet to read, in any batching: windows and sessions see
exactly the events the lake and `enriched_activity` hold.

Reconciliation: Kafka records in = events + quarantined + dropped late + dropped duplicates.
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
from spark import bronze
from spark.bronze import KAFKA_COLUMNS, KAFKA_SOURCE_SCHEMA
from spark.checkpoints import batch_watermark_ms, sink_identity
from spark.delta_sink import append_to_tables, create_missing_tables, persisted, writer_lock
from spark.progress import count_late_drops

EVENT_FIELDS = tuple(f.name for f in EVENT.latest.fields if f.name != "event_timestamp")
ENRICHED_FIELDS = ("event_id", "user_id", "session_id", "event_type", "page", "schema_version")
_ISO_UTC_MS = "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"  # the session time zone is UTC
_DEDUP_KEY = "dedup_key"  # the event id; a refused record's Kafka position


def extract(
    spark: SparkSession, settings: Settings, layout: Layout, *, max_offsets: int | None = None
) -> DataFrame:
    topics = (layout.topic(ACTIVITY_TOPIC),)
    return bronze.kafka_stream(spark, settings, topics, max_offsets=max_offsets)


def transform(raw: DataFrame, watermark: str | None) -> DataFrame:
    """Kafka rows -> each record once with its `reason` (null for a valid event): valid
    events behind the watermark and repeated event ids are dropped (and counted by Spark).

    One stream for valid and refused records, so the Kafka source is read once per batch
    (two branches would read it twice). A refused record has no event time and a key of its
    own (its Kafka position): the watermark and the deduplication leave it alone.
    `watermark=None` skips both (a batch DataFrame, e.g. to create the tables).
    """
    routed = bronze.route(bronze.kafka_records(raw), EVENT)
    valid = F.col("reason").isNull()
    rows = routed.select(
        *EVENT_FIELDS,
        F.when(valid, F.timestamp_millis("event_timestamp")).alias("event_time"),
        *bronze.QUARANTINE_COLUMNS,
        *KAFKA_COLUMNS,
        F.when(valid, F.col("event_id"))
        .otherwise(F.concat_ws(":", "kafka_topic", "kafka_partition", "kafka_offset"))
        .alias(_DEDUP_KEY),
    )
    if watermark is None:
        return rows
    return rows.withWatermark("event_time", watermark).dropDuplicatesWithinWatermark([_DEDUP_KEY])


def split(batch: DataFrame, watermark_ms: int = 0) -> tuple[DataFrame, DataFrame, DataFrame]:
    """(events, quarantine, late events) of one micro-batch; events and quarantine as their
    Delta tables take them. Late: at or behind the batch's own watermark (see `start`)."""
    ingested_at = F.current_timestamp()
    valid = F.col("reason").isNull()
    on_time = F.unix_millis("event_time") > F.lit(watermark_ms)
    events_out = batch.where(valid & on_time).select(
        *EVENT_FIELDS,
        "event_time",
        F.to_date("event_time").alias("event_date"),
        *KAFKA_COLUMNS,
        ingested_at.alias("ingested_at"),
    )
    quarantine = batch.where(~valid).select(
        *bronze.QUARANTINE_COLUMNS,
        *KAFKA_COLUMNS,
        F.lit(BRONZE_QUERY).alias("stage"),
        ingested_at.alias("ingested_at"),
        F.to_date(ingested_at).alias("ingest_date"),
    )
    return events_out, quarantine, batch.where(valid & ~on_time)


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
    """Create the tables empty, so the window and session queries can start reading."""
    empty = transform(spark.createDataFrame([], KAFKA_SOURCE_SCHEMA), watermark=None)
    events_out, quarantine, _ = split(empty)
    create_missing_tables(layout, ((EVENTS_TABLE, events_out), (QUARANTINE_TABLE, quarantine)))


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

    checkpoint = layout.checkpoint(BRONZE_QUERY)
    sinks: list[TransactionalTopicSink] = []

    def enriched_sink() -> TransactionalTopicSink:
        if not sinks:  # after the query started: its checkpoint names the sink
            sink = sink_identity(BRONZE_QUERY, checkpoint)
            sinks.append(TransactionalTopicSink(settings, layout.topic(ENRICHED_TOPIC), sink))
        return sinks[0]

    def per_batch(batch: DataFrame, batch_id: int) -> None:
        with writer_lock(BRONZE_QUERY), persisted(batch):
            watermark_ms = batch_watermark_ms(checkpoint, batch_id)
            events_out, quarantine, late = split(batch, watermark_ms)
            count_late_drops(BRONZE_QUERY, batch_id, late.count())
            outputs = ((EVENTS_TABLE, events_out), (QUARANTINE_TABLE, quarantine))
            append_to_tables(layout, outputs, BRONZE_QUERY, batch_id)
            rows = enriched(events_out).toArrow()
            records = zip(
                (k.encode() for k in rows.column("key").to_pylist()),
                (v.encode() for v in rows.column("value").to_pylist()),
                strict=True,
            )
            enriched_sink().write(batch_id, records)

    return (
        transform(extract(spark, settings, layout, max_offsets=max_offsets), watermark)
        .writeStream.queryName(BRONZE_QUERY)
        .foreachBatch(per_batch)
        .option("checkpointLocation", checkpoint)
        .trigger(**trigger)
        .start()
    )
