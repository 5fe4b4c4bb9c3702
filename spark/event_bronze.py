"""Bronze for a Kafka stream of events with ids: validated, deduplicated, late events dropped.

extract: the pipeline's Kafka topics (offsets in the checkpoint).
transform: the kit's routing (spark/bronze.py) with the pipeline's contract; a valid event
  behind the watermark is dropped and counted by Spark (numRowsDroppedByWatermark), a
  repeated event id within the watermark is dropped once and counted
  (numDroppedDuplicateRows): both land in stream_progress. Invalid records are subject to
  neither: they go to the quarantine with the reason and the raw payload.
load: one foreachBatch appends the events (partitioned by event_date) and the refused
  records to their Delta tables with Delta's idempotent (query, batch id) transaction, then
  hands the events to the pipeline's own extra sink, if any.
Deduplication and lateness are decided here, once, so every sink and every downstream query
sees the same events.

Why bronze also drops by the batch's own watermark: Spark's operators drop a row as late by
the watermark of the *previous* batch (so chained operators agree), which lags the batch's
own watermark by one batch. A downstream query that has read bronze's earlier commits
(plus an empty batch that moved its watermark) may already stand at bronze's current
watermark, and would drop an event bronze accepted. So bronze keeps an event only if it is
after the watermark of its own batch (the offset log records it), drops the rest, and counts
them with Spark's drops (stream_progress.rows_dropped_by_watermark). A downstream watermark
(with the same delay) is then never past an event it has yet to read, in any batching:
downstream queries see exactly the events the lake holds.

Reconciliation: Kafka records in = events + quarantined + dropped late + dropped duplicates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.contracts import Contract
from lakehouse.layout import Layout
from lakehouse.settings import Settings
from spark import bronze
from spark.bronze import KAFKA_COLUMNS, KAFKA_SOURCE_SCHEMA
from spark.checkpoints import batch_watermark_ms
from spark.delta_sink import append_to_tables, create_missing_tables, persisted, writer_lock
from spark.kafka_offsets import count_lost_offsets
from spark.progress import count_late_drops

_DEDUP_KEY = "dedup_key"  # the event id; a refused record's Kafka position
# The pipeline's own sink of a micro-batch's accepted events: (events, batch id, checkpoint).
ExtraSink = Callable[[DataFrame, int, str], None]


@dataclass(frozen=True)
class EventBronze:
    contract: Contract  # with `event_id` and the event time field `event_timestamp`
    query: str
    topics: tuple[str, ...]  # logical names, layout.topic() gives the real ones
    events_table: str
    quarantine_table: str

    @property
    def event_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.contract.latest.fields if f.name != "event_timestamp")

    def extract(
        self,
        spark: SparkSession,
        settings: Settings,
        layout: Layout,
        *,
        max_offsets: int | None = None,
    ) -> DataFrame:
        topics = tuple(layout.topic(t) for t in self.topics)
        return bronze.kafka_stream(spark, settings, topics, max_offsets=max_offsets)

    def transform(self, raw: DataFrame, watermark: str | None) -> DataFrame:
        """Kafka rows -> each record once with its `reason` (null for a valid event): valid
        events behind the watermark and repeated event ids are dropped (and counted by
        Spark).

        One stream for valid and refused records, so the Kafka source is read once per batch
        (two branches would read it twice). A refused record has no event time and a key of
        its own (its Kafka position): the watermark and the deduplication leave it alone.
        `watermark=None` skips both (a batch DataFrame, e.g. to create the tables).
        """
        routed = bronze.route(bronze.kafka_records(raw), self.contract)
        valid = F.col("reason").isNull()
        rows = routed.select(
            *self.event_fields,
            F.when(valid, F.timestamp_millis("event_timestamp")).alias("event_time"),
            *bronze.QUARANTINE_COLUMNS,
            *KAFKA_COLUMNS,
            F.when(valid, F.col("event_id"))
            .otherwise(F.concat_ws(":", "kafka_topic", "kafka_partition", "kafka_offset"))
            .alias(_DEDUP_KEY),
        )
        if watermark is None:
            return rows
        return rows.withWatermark("event_time", watermark).dropDuplicatesWithinWatermark(
            [_DEDUP_KEY]
        )

    def split(
        self, batch: DataFrame, watermark_ms: int = 0
    ) -> tuple[DataFrame, DataFrame, DataFrame]:
        """(events, quarantine, late events) of one micro-batch; events and quarantine as
        their Delta tables take them. Late: at or behind the batch's own watermark."""
        ingested_at = F.current_timestamp()
        valid = F.col("reason").isNull()
        on_time = F.unix_millis("event_time") > F.lit(watermark_ms)
        events_out = batch.where(valid & on_time).select(
            *self.event_fields,
            "event_time",
            F.to_date("event_time").alias("event_date"),
            *KAFKA_COLUMNS,
            ingested_at.alias("ingested_at"),
        )
        quarantine = batch.where(~valid).select(
            *bronze.QUARANTINE_COLUMNS,
            *KAFKA_COLUMNS,
            F.lit(self.query).alias("stage"),
            ingested_at.alias("ingested_at"),
            F.to_date(ingested_at).alias("ingest_date"),
        )
        return events_out, quarantine, batch.where(valid & ~on_time)

    def ensure_tables(self, spark: SparkSession, layout: Layout) -> None:
        """Create the tables empty, so the downstream queries can start reading."""
        empty = self.transform(spark.createDataFrame([], KAFKA_SOURCE_SCHEMA), watermark=None)
        events_out, quarantine, _ = self.split(empty)
        outputs = ((self.events_table, events_out), (self.quarantine_table, quarantine))
        create_missing_tables(layout, outputs)

    def start(
        self,
        spark: SparkSession,
        settings: Settings,
        layout: Layout,
        *,
        trigger: dict,
        watermark: str,
        max_offsets: int | None = None,
        extra_sink: ExtraSink | None = None,
    ):
        checkpoint = layout.checkpoint(self.query)

        def per_batch(batch: DataFrame, batch_id: int) -> None:
            count_lost_offsets(settings, self.query, checkpoint, batch_id)  # before reading
            with writer_lock(self.query), persisted(batch) as rows:
                watermark_ms = batch_watermark_ms(checkpoint, batch_id)
                events_out, quarantine, late = self.split(batch, watermark_ms)
                count_late_drops(self.query, batch_id, late.count())
                outputs = ((self.events_table, events_out), (self.quarantine_table, quarantine))
                append_to_tables(layout, outputs, self.query, batch_id, rows=rows)
                if extra_sink is not None:
                    extra_sink(events_out, batch_id, checkpoint)

        raw = self.extract(spark, settings, layout, max_offsets=max_offsets)
        return (
            self.transform(raw, watermark)
            .writeStream.queryName(self.query)
            .foreachBatch(per_batch)
            .option("checkpointLocation", checkpoint)
            .trigger(**trigger)
            .start()
        )
