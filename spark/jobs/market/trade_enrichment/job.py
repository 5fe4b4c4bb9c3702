"""Silver `trades_enriched` of the market pipeline: bronze trades + references -> enriched.

extract: the bronze Delta tables as streams.
transform: the union of trades and reference rows with a `kind` column, grouped by a
hash bucket of the symbol (many symbols per group: one pandas call costs about 6 ms, so one
call per symbol would dominate) and handed to applyInPandasWithState, whose function is
the pure `state.step`: as-of lookup on a bounded reference history, deduplication by
trade id, trades held until the watermark passes them. RocksDB keeps the state.
load: foreachBatch folds the batch's trades into the live one-minute bars in Postgres
(live_bars.py, once per batch by the sink ledger), then appends enriched trades to silver
and duplicates/late trades to the stage's quarantine, both with (query name, batch id) as
Delta's idempotent transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming.state import GroupState, GroupStateTimeout
from pyspark.sql.types import (
    BinaryType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from lakehouse.layout import Layout
from lakehouse.params import duration_ms
from lakehouse.settings import Settings
from spark.delta_sink import append_to_tables, persisted, table_stream, writer_lock
from spark.jobs.market import live_bars
from spark.jobs.market.trade_enrichment import state as enrichment

QUERY_NAME = "trades_enrichment"
DEFAULT_BUCKETS = 16
DEFAULT_WATERMARK = "10 seconds"

OUTPUT_SCHEMA = StructType(
    [
        StructField("trade_id", StringType()),
        StructField("symbol", StringType()),
        StructField("event_time_ms", LongType()),
        StructField("price", DoubleType()),
        StructField("volume", DoubleType()),  # null on late references; long in silver
        StructField("company_name", StringType()),
        StructField("sector", StringType()),
        StructField("kafka_partition", IntegerType()),
        StructField("kafka_offset", LongType()),
        StructField("status", StringType()),
    ]
)
STATE_SCHEMA = StructType([StructField("blob", BinaryType())])
QUARANTINE_REASONS = {
    "duplicate": "duplicate_trade_id",
    "late": "late_trade",
    "late_reference": "late_reference",
}


def extract(
    spark: SparkSession, layout: Layout, *, max_files: int | None = None
) -> tuple[DataFrame, DataFrame]:
    trades = table_stream(spark, layout, "bronze_trades", max_files=max_files)
    references = table_stream(spark, layout, "bronze_company_reference", max_files=max_files)
    return trades, references


def union_events(trades: DataFrame, references: DataFrame) -> DataFrame:
    """The union: one row type for both streams, told apart by `kind`."""
    null_string, null_long = F.lit(None).cast("string"), F.lit(None).cast("long")
    trade_rows = trades.select(
        F.lit("trade").alias("kind"),
        "trade_id",
        "symbol",
        "event_time",
        "price",
        "volume",
        null_string.alias("company_name"),
        null_string.alias("sector"),
        F.col("kafka_partition").cast("int").alias("kafka_partition"),
        "kafka_offset",
    )
    reference_rows = references.select(
        F.lit("reference").alias("kind"),
        null_string.alias("trade_id"),
        "symbol",
        "event_time",
        F.lit(None).cast("double").alias("price"),
        null_long.alias("volume"),
        "company_name",
        "sector",
        F.col("kafka_partition").cast("int").alias("kafka_partition"),
        "kafka_offset",
    )
    return trade_rows.unionByName(reference_rows)


def watermark_delay_ms(delay: str) -> int:
    """'10 seconds', '1 minute', 'interval 2 hours' (what withWatermark takes) in ms."""
    return duration_ms(delay)


def enrich_bucket(
    key: tuple,
    chunks: Iterator[pd.DataFrame],
    group_state: GroupState,
    delay_ms: int | None = None,
) -> Iterator[pd.DataFrame]:
    """applyInPandasWithState adapter: state blob <-> `state.step` <-> Spark timeouts.
    Bind `delay_ms` (the query's watermark delay) so trades leave in the batch they arrive
    in once the next watermark must pass them (state.py explains why that is exact)."""
    stored = (
        enrichment.state_from_bytes(group_state.get[0])
        if group_state.exists
        else enrichment.empty_state()
    )
    chunks = [chunk for chunk in chunks if len(chunk)] or [enrichment.empty_input()]
    watermark = group_state.getCurrentWatermarkMs()
    result = enrichment.step(stored, chunks, watermark, delay_ms)
    if len(result.state):
        group_state.update((enrichment.state_to_bytes(result.state),))
        if result.next_timeout_ms is not None:
            # Called back once the watermark passes the oldest held trade, data or not.
            group_state.setTimeoutTimestamp(max(result.next_timeout_ms, watermark + 1))
    else:
        group_state.remove()
    if len(result.output):
        yield result.output[list(OUTPUT_SCHEMA.fieldNames())]


def bucketed_events(
    trades: DataFrame,
    references: DataFrame,
    *,
    buckets: int = DEFAULT_BUCKETS,
    watermark: str = DEFAULT_WATERMARK,
) -> DataFrame:
    """The union with its watermark, event time in ms and the symbol's hash bucket."""
    return (
        union_events(trades, references)
        .withWatermark("event_time", watermark)
        .withColumn("event_time_ms", F.unix_millis("event_time"))
        .withColumn("bucket", F.pmod(F.xxhash64("symbol"), F.lit(buckets)))
    )


def transform(
    trades: DataFrame,
    references: DataFrame,
    *,
    buckets: int = DEFAULT_BUCKETS,
    watermark: str = DEFAULT_WATERMARK,
) -> DataFrame:
    events = bucketed_events(trades, references, buckets=buckets, watermark=watermark)
    return events.groupBy("bucket").applyInPandasWithState(
        partial(enrich_bucket, delay_ms=watermark_delay_ms(watermark)),
        OUTPUT_SCHEMA,
        STATE_SCHEMA,
        "append",
        # Spark drops rows older than the watermark before the function and counts them
        # (numRowsDroppedByWatermark); `step` still reports any that get through.
        # ProcessingTimeTimeout would keep them, but makes availableNow run forever.
        GroupStateTimeout.EventTimeTimeout,
    )


def split_output(output: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(silver rows, quarantine rows) of one micro-batch of the stateful operator."""
    event_time = F.timestamp_millis("event_time_ms")
    silver = output.where(F.col("status") == "enriched").select(
        "trade_id",
        "symbol",
        event_time.alias("event_time"),
        F.to_date(event_time).alias("event_date"),
        "price",
        F.col("volume").cast("long").alias("volume"),
        "company_name",
        "sector",
        "kafka_partition",
        "kafka_offset",
        F.current_timestamp().alias("enriched_at"),
    )
    quarantine = output.where(F.col("status") != "enriched").select(
        F.element_at(
            F.create_map(*[F.lit(x) for pair in QUARANTINE_REASONS.items() for x in pair]),
            F.col("status"),
        ).alias("reason"),
        F.col("symbol").alias("raw_key"),
        F.to_json(F.struct(*[c for c in output.columns if c != "status"])).alias("raw_value"),
        F.when(F.col("status") == "late_reference", F.lit("bronze_company_reference"))
        .otherwise(F.lit("bronze_trades"))
        .alias("source"),
        "kafka_partition",
        "kafka_offset",
        F.lit(QUERY_NAME).alias("stage"),
        F.current_timestamp().alias("ingested_at"),
        F.current_date().alias("ingest_date"),
    )
    return silver, quarantine


def load_batch(
    settings: Settings, layout: Layout, output: DataFrame, batch_id: int, rows: int | None = None
) -> None:
    silver, quarantine = split_output(output)
    # The live bars first: once silver shows a batch, so do they (each write is once per
    # batch on its own, so a crash between the two loses and doubles nothing).
    live_bars.load(settings, layout, silver, QUERY_NAME, batch_id)
    outputs = (("trades_enriched", silver), ("quarantine_trades_enrichment", quarantine))
    append_to_tables(layout, outputs, QUERY_NAME, batch_id, rows=rows)


def start(
    spark: SparkSession,
    settings: Settings,
    layout: Layout,
    *,
    trigger: dict,
    buckets: int = DEFAULT_BUCKETS,
    watermark: str = DEFAULT_WATERMARK,
    max_files: int | None = None,
):
    def per_batch(batch: DataFrame, batch_id: int) -> None:
        # Three writes read the batch: compute the stateful output once.
        with writer_lock(QUERY_NAME), persisted(batch) as rows:
            load_batch(settings, layout, batch, batch_id, rows)

    trades, references = extract(spark, layout, max_files=max_files)
    return (
        transform(trades, references, buckets=buckets, watermark=watermark)
        .writeStream.queryName(QUERY_NAME)
        .foreachBatch(per_batch)
        .option("checkpointLocation", layout.checkpoint(QUERY_NAME))
        .trigger(**trigger)
        .start()
    )
