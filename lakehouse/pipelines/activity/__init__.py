"""The web activity pipeline: user events -> windows, sessions and three exactly-once sinks.

Kafka `user_activity` -> bronze (validated; quarantine for the rest; late events dropped and
counted by the 2-minute watermark; duplicates by event id dropped and counted) ->
- the raw events as Delta `activity_events`, partitioned by event_date;
- Kafka `enriched_activity`: each accepted event plus `processing_time`, one Kafka
  transaction per micro-batch;
- Postgres `page_view_counts` (1-minute tumbling windows per page), `active_users` (exact
  distinct users in 5-minute windows sliding by 1 minute) and `user_sessions`
  (applyInPandasWithState: session_start to session_end or a 15-minute event-time timeout).
Its Spark side is spark/jobs/activity/, its producer producers/activity.py, its models
dbt_project/models (tag `activity`), its serving tables the migrations beside this file.
"""

from __future__ import annotations

from pathlib import Path

from lakehouse.contracts import Contract, Field, Matches, OneOf, RecordSchema
from lakehouse.kit import Pipeline, Table, Topic

ACTIVITY_TOPIC = "user_activity"
ENRICHED_TOPIC = "enriched_activity"
EVENT_TYPES = ("session_start", "page_view", "click", "add_to_cart", "session_end")
PAGE_PATTERN = "^/[a-z0-9/_-]*$"

EVENT = Contract(
    versions=(
        RecordSchema(
            "activity_event",
            1,
            (
                Field("schema_version", "long"),
                Field("event_id", "string"),
                Field("user_id", "string"),
                Field("session_id", "string"),
                Field("event_type", "string"),
                Field("page", "string", max_length=2048),  # a URL path; in a btree key
                Field("event_timestamp", "long"),  # epoch milliseconds, UTC
            ),
        ),
    ),
    rules=(
        OneOf("event_type", "unknown_event_type", EVENT_TYPES),
        Matches("page", "page_format", PAGE_PATTERN),
    ),
)

JOB = "activity_pipeline"
BRONZE_QUERY = "activity_bronze"
PAGE_VIEWS_QUERY = "activity_page_views"
ACTIVE_USERS_QUERY = "activity_active_users"
SESSIONS_QUERY = "activity_sessions"
EVENTS_TABLE = "activity_events"
QUARANTINE_TABLE = "quarantine_activity"
# The driver's parameters (--param activity.NAME=VALUE) and their defaults.
DEFAULT_PARAMS = (
    ("watermark", "2 minutes"),
    ("session_timeout", "15 minutes"),
    ("buckets", "16"),
)

PIPELINE = Pipeline(
    name="activity",
    job=JOB,
    queries="spark.jobs.activity.queries:ActivityQueries",
    topics=(Topic(ACTIVITY_TOPIC), Topic(ENRICHED_TOPIC)),
    tables=(
        Table(EVENTS_TABLE, "bronze/activity_events", BRONZE_QUERY, ("event_date",)),
        Table(QUARANTINE_TABLE, "quarantine/activity", BRONZE_QUERY, ("ingest_date",)),
    ),
    dbt_select="tag:activity",
    params=DEFAULT_PARAMS,
    other_queries=(PAGE_VIEWS_QUERY, ACTIVE_USERS_QUERY, SESSIONS_QUERY),
    migrations=Path(__file__).resolve().parent / "migrations",
    audit="producers.activity_audit:AUDIT",
    # Its windows and sessions close behind a 2-minute watermark: a batch a minute costs a
    # quarter of one every 15 s and delays them by less than the watermark does.
    trigger_s=60.0,
)
