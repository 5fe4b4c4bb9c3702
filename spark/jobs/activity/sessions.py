"""User sessions of the web activity pipeline: applyInPandasWithState over user buckets.

extract: Delta `activity_events` as a stream.
transform: events with the pipeline's watermark, grouped by a hash bucket of the user (one
  pandas call costs milliseconds, so one group per user would dominate as users grow) and
  handed to applyInPandasWithState with an event-time timeout; the function is the pure
  `sessions_state.step`: a session runs from session_start to session_end, or ends by
  timeout once the watermark passes its last event plus the session timeout (15 minutes).
  Open sessions are the state (RocksDB), one Arrow blob per bucket.
load: each micro-batch's closed sessions are upserted into Postgres `user_sessions` with
  the batch in the sink's ledger, in one transaction (spark/postgres_sink.py).
"""

from __future__ import annotations

from functools import partial

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType

from lakehouse.layout import Layout
from lakehouse.pipelines.activity import SESSIONS_QUERY
from lakehouse.settings import Settings
from spark import bucketed_state
from spark.bucketed_state import BucketedStep
from spark.jobs.activity import sessions_state
from spark.jobs.activity.windows import extract, start_upserts
from spark.postgres_sink import UpsertTarget

QUERY_NAME = SESSIONS_QUERY
INPUT_COLUMNS = ("user_id", "session_id", "event_type", "event_time_ms")
OUTPUT_SCHEMA = StructType(
    [
        StructField("user_id", StringType()),
        StructField("session_id", StringType()),
        StructField("session_start_ms", LongType()),
        StructField("session_end_ms", LongType()),
        StructField("duration_ms", LongType()),
        StructField("event_count", LongType()),
        StructField("pages_viewed", LongType()),
        StructField("end_reason", StringType()),
    ]
)
USER_SESSIONS = UpsertTarget(
    "user_sessions",
    ("user_id", "session_id", "session_start"),
    (
        "user_id",
        "session_id",
        "session_start",
        "session_end",
        "duration_s",
        "event_count",
        "pages_viewed",
        "end_reason",
    ),
)


def sessions_step(timeout_ms: int) -> BucketedStep:
    return BucketedStep(
        partial(_step, timeout_ms=timeout_ms),
        sessions_state.empty_state,
        sessions_state.state_to_bytes,
        sessions_state.state_from_bytes,
    )


def _step(state, chunks, watermark_ms: int, *, timeout_ms: int):
    # A timeout call has no rows; the step wants at least an empty frame.
    frames = [chunk for chunk in chunks if len(chunk)] or [sessions_state.empty_input()]
    return sessions_state.step(state, frames, watermark_ms, timeout_ms)


def bucketed(events: DataFrame, *, watermark: str, buckets: int) -> DataFrame:
    return bucketed_state.bucketed(
        events, "user_id", INPUT_COLUMNS[:3], watermark=watermark, buckets=buckets
    )


def transform(events: DataFrame, *, watermark: str, timeout_ms: int, buckets: int) -> DataFrame:
    rows = bucketed(events, watermark=watermark, buckets=buckets)
    return bucketed_state.apply_in_buckets(rows, sessions_step(timeout_ms), OUTPUT_SCHEMA)


def serving_rows(sessions: DataFrame) -> DataFrame:
    """Closed sessions as `user_sessions` rows."""
    return sessions.select(
        "user_id",
        "session_id",
        F.timestamp_millis("session_start_ms").alias("session_start"),
        F.timestamp_millis("session_end_ms").alias("session_end"),
        (F.col("duration_ms") / 1000.0).alias("duration_s"),
        "event_count",
        "pages_viewed",
        "end_reason",
    )


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
    sessions = transform(
        extract(spark, layout),
        watermark=watermark,
        timeout_ms=timeout_ms,
        buckets=buckets,
    )
    return start_upserts(
        serving_rows(sessions), QUERY_NAME, USER_SESSIONS, settings, layout, trigger, mode="append"
    )
