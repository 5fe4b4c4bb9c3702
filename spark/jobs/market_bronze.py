"""Bronze for market data (seed 003): Kafka `stock-trades` + `stock-info` -> Delta, exactly once.

extract: the Kafka source (offsets in the checkpoint).
transform: parse every record with the schemas of lakehouse.schemas and route it: a valid
trade, a valid reference update, or quarantine with the reason and the raw payload. Pure
DataFrame -> DataFrame, so it is tested without Kafka.
load: one foreachBatch that appends the three outputs to their Delta tables with
`txnAppId`/`txnVersion` = (query name, batch id): a batch replayed after a crash is skipped
by Delta, so every Kafka record lands exactly once in exactly one table.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.registry import TABLES
from lakehouse.schemas import (
    LATEST_REFERENCE,
    LATEST_TRADE,
    REFERENCE_RULES,
    TRADE_RULES,
    RecordSchema,
    spark_schema,
)
from lakehouse.settings import Settings
from spark.delta_sink import append_exactly_once, persisted, writer_lock
from spark.jobs.market_layout import MarketLayout

QUERY_NAME = "market_bronze"
KAFKA_SOURCE_SCHEMA = (
    "key binary, value binary, topic string, partition int, offset long, "
    "timestamp timestamp, timestampType int"
)
KAFKA_COLUMNS = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp")


@dataclass(frozen=True)
class BronzeOutputs:
    trades: DataFrame
    references: DataFrame
    quarantine: DataFrame


def extract(
    spark: SparkSession,
    settings: Settings,
    layout: MarketLayout,
    *,
    max_offsets: int | None = None,
) -> DataFrame:
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka_bootstrap)
        .option("subscribe", f"{layout.trades_topic},{layout.reference_topic}")
        .option("startingOffsets", "earliest")
        # Retention may delete offsets a stopped job never read: say so in the log, go on.
        .option("failOnDataLoss", "false")
    )
    if max_offsets:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets))
    return reader.load()


def _first_violation(rules) -> Column:
    """The reason of the first rule the record breaks, or null when it breaks none."""
    reason = F.lit(None).cast("string")
    for rule in reversed(rules):
        reason = F.when(F.expr(rule.condition), F.lit(rule.reason)).otherwise(reason)
    return reason


def _parsed(raw: DataFrame, schema, rules) -> DataFrame:
    """Kafka rows -> typed fields + `reason` (null when valid)."""
    corrupt = "_unparseable"
    spark_fields = spark_schema(schema).add(corrupt, "string")
    parsed = (
        raw.select(
            F.col("key").cast("string").alias("raw_key"),
            F.col("value").cast("string").alias("raw_value"),
            F.col("topic").alias("kafka_topic"),
            F.col("partition").alias("kafka_partition"),
            F.col("offset").alias("kafka_offset"),
            F.col("timestamp").alias("kafka_timestamp"),
            F.from_json(
                F.col("value").cast("string"),
                spark_fields,
                {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": corrupt},
            ).alias("record"),
        )
        .select("*", "record.*")
        .drop("record")
    )
    reason = (
        F.when(F.col("raw_value").isNull(), F.lit("empty_payload"))
        .when(F.col(corrupt).isNotNull(), F.lit("unparseable_or_mistyped"))
        .otherwise(_first_violation(rules))
    )
    return parsed.withColumn("reason", reason).drop(corrupt)


def _with_event_time(df: DataFrame) -> DataFrame:
    event_time = F.timestamp_millis(F.col("event_timestamp"))
    return df.withColumn("event_time", event_time).withColumn("event_date", F.to_date(event_time))


def _accepted(parsed: DataFrame, schema: RecordSchema, ingested_at: Column) -> DataFrame:
    """The valid records with their typed fields, event time and Kafka position."""
    fields = [f.name for f in schema.fields if f.name != "event_timestamp"]
    return _with_event_time(parsed.where(F.col("reason").isNull())).select(
        *fields, "event_time", "event_date", *KAFKA_COLUMNS, ingested_at.alias("ingested_at")
    )


def transform(raw: DataFrame, layout: MarketLayout) -> BronzeOutputs:
    """Route every Kafka record to exactly one of trades, references or quarantine."""
    ingested_at = F.current_timestamp()
    trades = _parsed(raw.where(F.col("topic") == layout.trades_topic), LATEST_TRADE, TRADE_RULES)
    references = _parsed(
        raw.where(F.col("topic") == layout.reference_topic), LATEST_REFERENCE, REFERENCE_RULES
    )
    quarantine_columns = ["reason", "raw_key", "raw_value", *KAFKA_COLUMNS]
    quarantine = (
        trades.where(F.col("reason").isNotNull())
        .select(*quarantine_columns)
        .unionByName(references.where(F.col("reason").isNotNull()).select(*quarantine_columns))
        .withColumn("stage", F.lit(QUERY_NAME))
        .withColumn("ingested_at", ingested_at)
        .withColumn("ingest_date", F.to_date(ingested_at))
    )
    return BronzeOutputs(
        _accepted(trades, LATEST_TRADE, ingested_at),
        _accepted(references, LATEST_REFERENCE, ingested_at),
        quarantine,
    )


def _by_table(outputs: BronzeOutputs) -> list[tuple[str, DataFrame]]:
    return [
        ("bronze_trades", outputs.trades),
        ("bronze_company_reference", outputs.references),
        ("quarantine_market", outputs.quarantine),
    ]


def load_batch(layout: MarketLayout, outputs: BronzeOutputs, batch_id: int) -> None:
    for name, df in _by_table(outputs):
        append_exactly_once(df, layout.table(name), QUERY_NAME, batch_id, TABLES[name].partitions)


def ensure_tables(spark: SparkSession, layout: MarketLayout) -> None:
    """Create the bronze tables empty, so readers (silver) can start before the first batch."""
    from delta.tables import DeltaTable

    empty = spark.createDataFrame([], KAFKA_SOURCE_SCHEMA)
    for name, df in _by_table(transform(empty, layout)):
        path = layout.table(name)
        if not DeltaTable.isDeltaTable(spark, path):
            df.write.format("delta").mode("append").partitionBy(*TABLES[name].partitions).save(path)


def start(
    spark: SparkSession,
    settings: Settings,
    layout: MarketLayout,
    *,
    trigger: dict,
    max_offsets: int | None = None,
):
    """Start the bronze query; returns the StreamingQuery."""

    def per_batch(batch: DataFrame, batch_id: int) -> None:
        # The three writes read the same micro-batch: fetch it from Kafka once.
        with writer_lock(QUERY_NAME), persisted(batch):
            load_batch(layout, transform(batch, layout), batch_id)

    return (
        extract(spark, settings, layout, max_offsets=max_offsets)
        .writeStream.queryName(QUERY_NAME)
        .foreachBatch(per_batch)
        .option("checkpointLocation", layout.checkpoint(QUERY_NAME))
        .trigger(**trigger)
        .start()
    )
