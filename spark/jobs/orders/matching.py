"""Order matching: applyInPandasWithState over order buckets, four exactly-once sinks.

extract: Delta `order_events` as a stream (validated, on time, each event once: bronze saw
  to all three).
transform: events under the pipeline's watermark, grouped by a hash bucket of the order id
  (one pandas call costs milliseconds, so one group per order would dominate as orders
  grow), handed to applyInPandasWithState with an event-time timeout; the function is the
  pure `matching_state.step`. Orders are the state (RocksDB), one Arrow blob per bucket.
load: one foreachBatch writes each micro-batch's state changes
  - to Delta `order_state_changes` (the history) with Delta's idempotent (query, batch id)
    transaction;
  - to Delta `order_outcomes` (latest per order) by a MERGE that replaces a row only with a
    higher version, so a replayed batch changes nothing;
  - to Postgres `order_status`, upserted by order id with the batch in the sink's ledger
    (spark/postgres_sink.py), the upsert also guarded by the version;
  - to the MongoDB collection `orders`, upserted by order id, guarded by the version
    (spark/mongo_sink.py).
"""

from __future__ import annotations

from functools import partial

import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from lakehouse.layout import Layout
from lakehouse.pipelines.orders import (
    CHANGES_TABLE,
    EVENTS_TABLE,
    MATCHING_QUERY,
    MONGO_COLLECTION,
    OUTCOMES_TABLE,
)
from lakehouse.settings import Settings
from spark import bucketed_state
from spark.bucketed_state import BucketedStep
from spark.checkpoints import sink_identity
from spark.delta_sink import (
    append_to_tables,
    create_missing_tables,
    persisted,
    table_stream,
    writer_lock,
)
from spark.jobs.orders import matching_state
from spark.postgres_sink import UpsertTarget, upsert_batch
from spark.progress import batch_heartbeat

QUERY_NAME = MATCHING_QUERY
OUTPUT_SCHEMA = StructType(
    [
        StructField("order_id", StringType()),
        StructField("status", StringType()),
        StructField("previous_status", StringType()),
        StructField("version", LongType()),
        StructField("order_amount", DoubleType()),
        StructField("paid_amount", DoubleType()),
        StructField("order_time_ms", LongType()),
        StructField("payment_time_ms", LongType()),
        StructField("order_to_payment_ms", LongType()),
        StructField("changed_at_ms", LongType()),
        StructField("deadline_ms", LongType()),
    ]
)
INPUT_COLUMNS = ("order_id", "event_type", "amount")
# The columns of an order's state everywhere it is served (Delta outcomes, Postgres, Mongo).
OUTCOME_COLUMNS = (
    "order_id",
    "status",
    "version",
    "order_amount",
    "paid_amount",
    "order_time",
    "payment_time",
    "order_to_payment_s",
    "changed_at",
    "deadline",
)
ORDER_STATUS = UpsertTarget("order_status", ("order_id",), OUTCOME_COLUMNS, newer_by="version")


def match_step(timeout_ms: int) -> BucketedStep:
    return BucketedStep(
        partial(_step, timeout_ms=timeout_ms),
        matching_state.empty_state,
        matching_state.state_to_bytes,
        matching_state.state_from_bytes,
    )


def _step(state, chunks, watermark_ms: int, *, timeout_ms: int):
    return matching_state.step(state, chunks, watermark_ms, timeout_ms)


def bucketed(events: DataFrame, *, watermark: str, buckets: int) -> DataFrame:
    return bucketed_state.bucketed(
        events, "order_id", INPUT_COLUMNS, watermark=watermark, buckets=buckets
    )


def transform(events: DataFrame, *, watermark: str, timeout_ms: int, buckets: int) -> DataFrame:
    rows = bucketed(events, watermark=watermark, buckets=buckets)
    return bucketed_state.apply_in_buckets(rows, match_step(timeout_ms), OUTPUT_SCHEMA)


def state_changes(changes: DataFrame) -> DataFrame:
    """The function's rows with times as timestamps: the history table's rows."""
    return changes.select(
        "order_id",
        "status",
        "previous_status",
        "version",
        "order_amount",
        "paid_amount",
        F.timestamp_millis("order_time_ms").alias("order_time"),
        F.timestamp_millis("payment_time_ms").alias("payment_time"),
        (F.col("order_to_payment_ms") / 1000.0).alias("order_to_payment_s"),
        F.timestamp_millis("changed_at_ms").alias("changed_at"),
        F.timestamp_millis("deadline_ms").alias("deadline"),
        F.to_date(F.timestamp_millis("changed_at_ms")).alias("change_date"),
    )


def latest_per_order(changes: DataFrame) -> DataFrame:
    """One row per order, its highest version (a batch holds one per order; a bench or a
    test batch may hold more)."""
    newest = Window.partitionBy("order_id").orderBy(F.col("version").desc())
    return (
        changes.withColumn("_rank", F.row_number().over(newest))
        .where("_rank = 1")
        .select(*OUTCOME_COLUMNS)
    )


def merge_outcomes(spark: SparkSession, layout: Layout, latest: DataFrame) -> None:
    """Replace an order's outcome only with a higher version: replays change nothing."""
    from delta.tables import DeltaTable

    target = DeltaTable.forPath(spark, layout.table(layout.registry.table(OUTCOMES_TABLE)))
    (
        target.alias("t")
        .merge(latest.alias("s"), "t.order_id = s.order_id")
        .whenMatchedUpdateAll(condition="s.version > t.version")
        .whenNotMatchedInsertAll()
        .execute()
    )


def mongo_documents(latest: pd.DataFrame) -> list[dict]:
    """Order rows -> documents keyed by order id (nulls left out, times as datetimes)."""
    docs = []
    for row in latest.to_dict("records"):
        doc = {"_id": row.pop("order_id")}
        doc.update(
            {
                k: (v.to_pydatetime() if isinstance(v, pd.Timestamp) else v)
                for k, v in row.items()
                if v is not None and not pd.isna(v)
            }
        )
        docs.append(doc)
    return docs


def ensure_tables(spark: SparkSession, layout: Layout) -> None:
    empty = spark.createDataFrame([], OUTPUT_SCHEMA)
    changes = state_changes(empty)
    outputs = ((CHANGES_TABLE, changes), (OUTCOMES_TABLE, latest_per_order(changes)))
    create_missing_tables(layout, outputs)


def start(
    spark: SparkSession,
    settings: Settings,
    layout: Layout,
    *,
    trigger: dict,
    watermark: str,
    timeout_ms: int,
    buckets: int,
):
    from spark.mongo_sink import collection, upsert_versioned

    checkpoint = layout.checkpoint(QUERY_NAME)

    def per_batch(batch: DataFrame, batch_id: int) -> None:
        advanced = batch_heartbeat(QUERY_NAME)
        with writer_lock(QUERY_NAME), persisted(batch) as rows:
            changes = state_changes(batch)
            append_to_tables(layout, ((CHANGES_TABLE, changes),), QUERY_NAME, batch_id, rows=rows)
            advanced()
            latest = latest_per_order(changes).persist()
            try:
                merge_outcomes(spark, layout, latest)
                rows = latest.toArrow()
            finally:
                latest.unpersist()
            advanced()
            sink = sink_identity(QUERY_NAME, checkpoint)
            upsert_batch(settings, layout.serving_schema, ORDER_STATUS, rows, sink, batch_id)
            advanced()
            docs = mongo_documents(rows.to_pandas())
            target = collection(settings, layout.collection(MONGO_COLLECTION))
            upsert_versioned(target, docs, on_progress=advanced)

    events = table_stream(spark, layout, EVENTS_TABLE)
    return (
        transform(events, watermark=watermark, timeout_ms=timeout_ms, buckets=buckets)
        .writeStream.queryName(QUERY_NAME)
        .foreachBatch(per_batch)
        .option("checkpointLocation", checkpoint)
        .trigger(**trigger)
        .start()
    )
