"""The orders pipeline: orders and payments matched per order, with expiry and refunds.

Kafka `orders` (order_created, order_cancelled) and `payments` (payment_received,
payment_refunded): each side's follow-up events travel on that side's topic, so one
producer per side keeps its own events in order. ->
- bronze: validated (quarantine with the reason and the raw payload), late events and
  repeated event ids dropped and counted, as Delta `order_events` (partitioned by event_date);
- matching: applyInPandasWithState over hash buckets of order ids. Each order moves through
  awaiting_payment / awaiting_order -> paid / amount_mismatch -> cancelled / refunded, or
  expires when the watermark passes its window (30 minutes from its first event by
  default) unmatched. Each state change is written, exactly once, to Delta
  `order_state_changes` (history), Delta `order_outcomes` (latest per order, MERGE guarded by
  the version), Postgres `order_status` and the MongoDB collection `orders` (both upserted by
  order id, guarded by the version).
Its Spark side is spark/jobs/orders/, its producer producers/orders.py, its serving table the
migration beside this file.
"""

from __future__ import annotations

from pathlib import Path

from lakehouse.contracts import Above, Contract, Field, OneOf, RecordSchema
from lakehouse.kit import Pipeline, Table, Topic

ORDERS_TOPIC = "orders"
PAYMENTS_TOPIC = "payments"
ORDER_CREATED = "order_created"
ORDER_CANCELLED = "order_cancelled"
PAYMENT_RECEIVED = "payment_received"
PAYMENT_REFUNDED = "payment_refunded"
EVENT_TYPES = (ORDER_CREATED, ORDER_CANCELLED, PAYMENT_RECEIVED, PAYMENT_REFUNDED)
# An order's statuses (the matching's state, its sinks' `status`).
AWAITING_PAYMENT = "awaiting_payment"
AWAITING_ORDER = "awaiting_order"
PAID = "paid"
AMOUNT_MISMATCH = "amount_mismatch"
CANCELLED = "cancelled"
REFUNDED = "refunded"
EXPIRED = "expired"
STATUSES = (AWAITING_PAYMENT, AWAITING_ORDER, PAID, AMOUNT_MISMATCH, CANCELLED, REFUNDED, EXPIRED)

EVENT = Contract(
    versions=(
        RecordSchema(
            "order_event",
            1,
            (
                Field("schema_version", "long"),
                Field("event_id", "string"),
                Field("order_id", "string"),
                Field("customer_id", "string"),
                Field("event_type", "string"),
                Field("amount", "double"),  # the order's total, or the amount paid/refunded
                Field("event_timestamp", "long"),  # epoch milliseconds, UTC
            ),
        ),
    ),
    rules=(
        OneOf("event_type", "unknown_event_type", EVENT_TYPES),
        Above("amount", "non_positive_amount", 0),
    ),
)

JOB = "orders_pipeline"
BRONZE_QUERY = "orders_bronze"
MATCHING_QUERY = "orders_matching"
EVENTS_TABLE = "order_events"
QUARANTINE_TABLE = "quarantine_orders"
CHANGES_TABLE = "order_state_changes"
OUTCOMES_TABLE = "order_outcomes"
MONGO_COLLECTION = "orders"
# The driver's parameters (--param orders.NAME=VALUE) and their defaults.
DEFAULT_PARAMS = (
    ("watermark", "2 minutes"),
    ("order_timeout", "30 minutes"),
    ("buckets", "16"),
)

PIPELINE = Pipeline(
    name="orders",
    job=JOB,
    queries="spark.jobs.orders.queries:OrdersQueries",
    topics=(Topic(ORDERS_TOPIC), Topic(PAYMENTS_TOPIC)),
    tables=(
        Table(EVENTS_TABLE, "bronze/order_events", BRONZE_QUERY, ("event_date",)),
        Table(QUARANTINE_TABLE, "quarantine/orders", BRONZE_QUERY, ("ingest_date",)),
        Table(CHANGES_TABLE, "silver/order_state_changes", MATCHING_QUERY, ("change_date",)),
        Table(OUTCOMES_TABLE, "gold/order_outcomes", MATCHING_QUERY),
    ),
    params=DEFAULT_PARAMS,
    migrations=Path(__file__).resolve().parent / "migrations",
    audit="producers.orders_audit:AUDIT",
    # Orders time out after 30 minutes behind a 2-minute watermark, and each matching batch
    # merges into the outcomes table (rewriting the files its orders are in): a batch a minute.
    trigger_s=60.0,
)
