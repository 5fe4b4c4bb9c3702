"""Page views per minute and active users of the web activity pipeline.

extract: Delta `activity_events` as a stream (on time, each event once: bronze saw to both).
transform: two event-time window aggregations under the pipeline's watermark, pure
  DataFrame -> DataFrame:
  - page views per page in 1-minute tumbling windows;
  - active users: the exact number of distinct users in 5-minute windows sliding by
    1 minute. Spark refuses count(DISTINCT) on a stream; the set of a window's users is
    kept in its state instead (collect_set) and counted, exact at any number of users.
load: update mode, so the open windows' counts are live; each micro-batch's rows are upserted
  into Postgres by their window (and page), with the batch in the sink's ledger in the same
  transaction (spark/postgres_sink.py). A window's last upsert is its final count.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.layout import Layout
from lakehouse.pipelines.activity import ACTIVE_USERS_QUERY, EVENTS_TABLE, PAGE_VIEWS_QUERY
from lakehouse.settings import Settings
from spark.checkpoints import sink_identity
from spark.delta_sink import table_stream
from spark.postgres_sink import UpsertTarget, upsert_batch

PAGE_VIEWS = UpsertTarget(
    "page_view_counts", ("window_start", "page"), ("window_start", "window_end", "page", "views")
)
ACTIVE_USERS = UpsertTarget(
    "active_users",
    ("window_start", "window_end"),
    ("window_start", "window_end", "active_users"),
)


def extract(spark: SparkSession, layout: Layout) -> DataFrame:
    return table_stream(spark, layout, EVENTS_TABLE)


def page_views(events: DataFrame, watermark: str) -> DataFrame:
    return (
        events.where(F.col("event_type") == "page_view")
        .withWatermark("event_time", watermark)
        .groupBy(F.window("event_time", "1 minute"), "page")
        .agg(F.count("*").alias("views"))
        .select(
            F.col("window.start").alias("window_start"),
            F.col("window.end").alias("window_end"),
            "page",
            "views",
        )
    )


def active_users(events: DataFrame, watermark: str) -> DataFrame:
    return (
        events.withWatermark("event_time", watermark)
        .groupBy(F.window("event_time", "5 minutes", "1 minute"))
        .agg(F.size(F.collect_set("user_id")).cast("long").alias("active_users"))
        .select(
            F.col("window.start").alias("window_start"),
            F.col("window.end").alias("window_end"),
            "active_users",
        )
    )


def start_upserts(
    rows: DataFrame,
    query: str,
    target: UpsertTarget,
    settings: Settings,
    layout: Layout,
    trigger: dict,
    *,
    mode: str = "update",
):
    """Stream `rows` into `target`, one ledgered upsert per micro-batch."""
    checkpoint = layout.checkpoint(query)

    def per_batch(batch: DataFrame, batch_id: int) -> None:
        sink = sink_identity(query, checkpoint)
        upsert_batch(settings, layout.serving_schema, target, batch.toArrow(), sink, batch_id)

    return (
        rows.writeStream.queryName(query)
        .outputMode(mode)
        .foreachBatch(per_batch)
        .option("checkpointLocation", checkpoint)
        .trigger(**trigger)
        .start()
    )


def start_page_views(
    spark: SparkSession, settings: Settings, layout: Layout, *, trigger: dict, watermark: str
):
    rows = page_views(extract(spark, layout), watermark)
    return start_upserts(rows, PAGE_VIEWS_QUERY, PAGE_VIEWS, settings, layout, trigger)


def start_active_users(
    spark: SparkSession, settings: Settings, layout: Layout, *, trigger: dict, watermark: str
):
    rows = active_users(extract(spark, layout), watermark)
    return start_upserts(rows, ACTIVE_USERS_QUERY, ACTIVE_USERS, settings, layout, trigger)
