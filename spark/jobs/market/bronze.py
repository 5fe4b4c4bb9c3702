"""Bronze of the market pipeline: Kafka `stock-trades` + `stock-info` -> Delta, exactly once.

extract: the Kafka source (offsets in the checkpoint).
transform: the kit's bronze routing (spark/bronze.py) with the market's contracts
  (lakehouse/pipelines/market.py): a valid trade, a valid reference update, or quarantine
  with the reason, the raw payload and the Kafka position. Pure DataFrame -> DataFrame.
load: one foreachBatch that appends the three outputs to their Delta tables, each commit
  marked with (query name and checkpoint id, batch id): a batch replayed after a crash is
  skipped (spark/delta_sink.py), so every Kafka record lands exactly once in exactly one table.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.contracts import Contract
from lakehouse.layout import Layout
from lakehouse.pipelines.market import REFERENCE, REFERENCE_TOPIC, TRADE, TRADES_TOPIC
from lakehouse.settings import Settings
from spark import bronze
from spark.bronze import KAFKA_COLUMNS, KAFKA_SOURCE_SCHEMA
from spark.delta_sink import append_to_tables, create_missing_tables, persisted, writer_lock
from spark.kafka_offsets import count_lost_offsets

QUERY_NAME = "market_bronze"
__all__ = ["KAFKA_SOURCE_SCHEMA", "QUERY_NAME", "BronzeOutputs", "start", "transform"]


@dataclass(frozen=True)
class BronzeOutputs:
    trades: DataFrame
    references: DataFrame
    quarantine: DataFrame


def extract(
    spark: SparkSession,
    settings: Settings,
    layout: Layout,
    *,
    max_offsets: int | None = None,
) -> DataFrame:
    topics = (layout.topic(TRADES_TOPIC), layout.topic(REFERENCE_TOPIC))
    return bronze.kafka_stream(spark, settings, topics, max_offsets=max_offsets)


def _with_event_time(df: DataFrame) -> DataFrame:
    event_time = F.timestamp_millis(F.col("event_timestamp"))
    return df.withColumn("event_time", event_time).withColumn("event_date", F.to_date(event_time))


def _accepted(routed: DataFrame, contract: Contract, ingested_at: Column) -> DataFrame:
    """The valid records with their typed fields, event time and Kafka position."""
    fields = [f.name for f in contract.latest.fields if f.name != "event_timestamp"]
    return _with_event_time(bronze.accepted(routed)).select(
        *fields, "event_time", "event_date", *KAFKA_COLUMNS, ingested_at.alias("ingested_at")
    )


def transform(raw: DataFrame, layout: Layout) -> BronzeOutputs:
    """Route every Kafka record to exactly one of trades, references or quarantine."""
    ingested_at = F.current_timestamp()
    records = bronze.kafka_records(raw)
    trades = bronze.route(records.where(F.col("kafka_topic") == layout.topic(TRADES_TOPIC)), TRADE)
    references = bronze.route(
        records.where(F.col("kafka_topic") == layout.topic(REFERENCE_TOPIC)), REFERENCE
    )
    quarantine = (
        bronze.quarantined(trades, KAFKA_COLUMNS)
        .unionByName(bronze.quarantined(references, KAFKA_COLUMNS))
        .withColumn("stage", F.lit(QUERY_NAME))
        .withColumn("ingested_at", ingested_at)
        .withColumn("ingest_date", F.to_date(ingested_at))
    )
    return BronzeOutputs(
        _accepted(trades, TRADE, ingested_at),
        _accepted(references, REFERENCE, ingested_at),
        quarantine,
    )


def _by_table(outputs: BronzeOutputs) -> list[tuple[str, DataFrame]]:
    return [
        ("bronze_trades", outputs.trades),
        ("bronze_company_reference", outputs.references),
        ("quarantine_market", outputs.quarantine),
    ]


def load_batch(
    layout: Layout, outputs: BronzeOutputs, batch_id: int, rows: int | None = None
) -> None:
    append_to_tables(layout, _by_table(outputs), QUERY_NAME, batch_id, rows=rows)


def ensure_tables(spark: SparkSession, layout: Layout) -> None:
    """Create the bronze tables empty, so readers (silver) can start before the first batch."""
    empty = spark.createDataFrame([], KAFKA_SOURCE_SCHEMA)
    create_missing_tables(layout, _by_table(transform(empty, layout)))


def start(
    spark: SparkSession,
    settings: Settings,
    layout: Layout,
    *,
    trigger: dict,
    max_offsets: int | None = None,
):
    """Start the bronze query; returns the StreamingQuery."""

    def per_batch(batch: DataFrame, batch_id: int) -> None:
        count_lost_offsets(settings, QUERY_NAME, layout.checkpoint(QUERY_NAME), batch_id)
        # The three writes read the same micro-batch: fetch it from Kafka once.
        with writer_lock(QUERY_NAME), persisted(batch) as rows:
            load_batch(layout, transform(batch, layout), batch_id, rows)

    return (
        extract(spark, settings, layout, max_offsets=max_offsets)
        .writeStream.queryName(QUERY_NAME)
        .foreachBatch(per_batch)
        .option("checkpointLocation", layout.checkpoint(QUERY_NAME))
        .trigger(**trigger)
        .start()
    )
