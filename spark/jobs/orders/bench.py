"""Benchmark of the orders pipeline's matching operator (`lakehouse bench orders`).

Variants, all reading the same generated input as a file stream on the same Spark session,
in the same run:

- `matching`: `matching.transform`, the order matching (applyInPandasWithState over order
  hash buckets, `matching_state.step` in the Python worker, RocksDB state);
- `passthrough`: the same bucketed applyInPandasWithState with `bucketed_state.passthrough_bucket`,
  a function that returns its input: the operator's cost with every row going to Python and
  back, the ceiling matching is read against. Matching emits about one row per order per
  micro-batch it is touched in (fewer than its input rows), so it can beat this;
- `stateless`: `matching.bucketed` alone, the operator's input projection.

Input: order events generated with numpy (not the producer, so 1M rows take a second),
written to local Parquet, one file of `batch_rows` rows per micro-batch, read with
maxFilesPerTrigger=1 and availableNow. Orders open at a fixed rate of event time
(`orders_per_s`, one every 50 ms by default), each drawn a plan as producers/orders.py
draws them: paid (80 %), amount mismatch (5 %), paid then refunded (5 %), cancelled (5 %:
half unpaid, half paid and then refunded), no partner (5 %: only the order or only the
payment, so it expires). 20 % of the orders with both an order and a payment send the
payment first. The partner comes 2 s to 4 min after the first event, each follow-up 5 s to
4 min after the previous one (log-uniform, as the producer), so an order's events stay
within 12 minutes, well inside its 30-minute window. Rows are in event-time order, so every
file moves the watermark on (at 20 orders/s a 100,000-row file is about 40 minutes of event
time, more than the timeout): orders close and expire during the run and leave the state a
timeout after closing.

What the input must give (computed from it, with the final watermark W = the last event
time - the 2-minute watermark delay, as Spark's last no-data batch sees it):
- `expired_orders`: orders whose deadline (first event + timeout) is before W and whose
  facts leave them awaiting a partner. Each matching run must emit exactly this many
  `expired` rows, and one version-1 row per order of the input (counted by `observe` on its
  output, a per-row count with no shuffle), or the bench fails;
- `open_orders`: the orders still open in the state after the run, those whose deadline W
  has not passed (the rest are closed);
- `open_orders_bound`: the orders whose first event is in the last timeout of the input.
  The open orders are those of the last timeout + watermark delay, so they exceed the
  bound by the orders of one watermark delay (2/30 at the defaults): what stays open is set
  by the rate and the timeout, whatever the input size;
- `held_orders`: what the state holds after the run: the open orders and the closed ones
  kept for another timeout (to absorb stragglers), about twice the open ones. Every
  micro-batch that touches a bucket reads and rewrites all of its held orders.

Timing, sink and medians as spark/bench_common.py describes (steady rate without the first
batch and the final no-data one, noop sink, interleaved repeats, median).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StringType, StructField, StructType, TimestampType

from lakehouse.params import duration_ms
from lakehouse.pipelines.orders import (
    DEFAULT_PARAMS,
    ORDER_CANCELLED,
    ORDER_CREATED,
    PAYMENT_RECEIVED,
    PAYMENT_REFUNDED,
)
from spark import bucketed_state
from spark.bench_common import (
    file_stream,
    interleaved,
    medians,
    observed,
    run_to_noop,
    write_batches,
)
from spark.jobs.orders import matching, matching_state

PARAMS = dict(DEFAULT_PARAMS)
WATERMARK = PARAMS["watermark"]
TIMEOUT_MS = duration_ms(PARAMS["order_timeout"], "order timeout")
BUCKETS = int(PARAMS["buckets"])

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
ORDERS_PER_S = 20.0  # orders opened per second of event time
PAYMENT_FIRST = 0.2  # of the orders with both an order and a payment
# Plans (producers/orders.py's), each with its share; the rest are paid.
PAID, MISMATCH, REFUND, CANCEL_UNPAID, CANCEL_PAID, MISSING_PAYMENT, MISSING_ORDER = range(7)
PLAN_SHARES = (
    (MISMATCH, 0.05),
    (REFUND, 0.05),
    (CANCEL_UNPAID, 0.025),
    (CANCEL_PAID, 0.025),  # paid, cancelled, then refunded
    (MISSING_PAYMENT, 0.025),
    (MISSING_ORDER, 0.025),
)
PAYMENT_DELAY_MS = (2_000, 240_000)  # the partner after the first event, log-uniform
FOLLOW_UP_DELAY_MS = (5_000, 240_000)  # each follow-up after the previous event
MAX_SPAN_MS = PAYMENT_DELAY_MS[1] + 2 * FOLLOW_UP_DELAY_MS[1]  # an order's events, at most
MIN_CENTS, MAX_CENTS = 500, 50_000
# Index = the event type's code in the generator.
EVENT_TYPES = (ORDER_CREATED, PAYMENT_RECEIVED, ORDER_CANCELLED, PAYMENT_REFUNDED)
CHECK = "orders_check"  # the observed metrics of the matching's output

EVENT_SCHEMA = StructType(
    [
        StructField("order_id", StringType()),
        StructField("event_type", StringType()),
        StructField("amount", DoubleType()),
        StructField("event_time", TimestampType()),
    ]
)
_ARROW_SCHEMA = pa.schema(
    [
        ("order_id", pa.string()),
        ("event_type", pa.string()),
        ("amount", pa.float64()),
        ("event_time", pa.timestamp("ms", tz="UTC")),
    ]
)


def _log_uniform(rng: np.random.Generator, bounds: tuple[int, int], n: int) -> np.ndarray:
    low, high = np.log(bounds[0]), np.log(bounds[1])
    return np.exp(rng.uniform(low, high, n)).astype(np.int64)


def _plans(rng: np.random.Generator, n: int) -> np.ndarray:
    codes = np.array([code for code, _ in PLAN_SHARES] + [PAID])
    edges = np.cumsum([share for _, share in PLAN_SHARES])
    return codes[np.searchsorted(edges, rng.random(n), side="right")]


def generate_events(
    rows: int,
    seed: int,
    *,
    orders_per_s: float = ORDERS_PER_S,
    timeout_ms: int = TIMEOUT_MS,
    watermark_ms: int = 0,
) -> tuple[pa.Table, dict]:
    """The first `rows` events in event-time order of orders opening at `orders_per_s`, and
    what they should give (this module's docstring). The last orders may be cut short; they
    are open at the end either way."""
    rng = np.random.default_rng(seed)
    n = rows  # every order has an event: enough orders to reach `rows` in any case
    t0 = START_MS + (np.arange(n) * (1000 / orders_per_s)).astype(np.int64)
    plan = _plans(rng, n)
    has_order = plan != MISSING_ORDER
    has_payment = np.isin(plan, (PAID, MISMATCH, REFUND, CANCEL_PAID, MISSING_ORDER))
    both = has_order & has_payment
    payment_first = both & (rng.random(n) < PAYMENT_FIRST)
    partner_ms = t0 + _log_uniform(rng, PAYMENT_DELAY_MS, n)
    order_ms = np.where(payment_first, partner_ms, t0)
    paid_ms = np.where(both & ~payment_first, partner_ms, t0)
    matched_ms = np.where(both, partner_ms, t0)  # both sides in (or the only one)
    cancelled = np.isin(plan, (CANCEL_UNPAID, CANCEL_PAID))
    refunded = np.isin(plan, (REFUND, CANCEL_PAID))
    cancel_ms = matched_ms + _log_uniform(rng, FOLLOW_UP_DELAY_MS, n)
    refund_ms = np.where(plan == CANCEL_PAID, cancel_ms, matched_ms) + _log_uniform(
        rng, FOLLOW_UP_DELAY_MS, n
    )
    cents = rng.integers(MIN_CENTS, MAX_CENTS + 1, n)
    paid_cents = np.where(plan == MISMATCH, cents - rng.integers(1, MIN_CENTS, n), cents)

    sides = (
        (has_order, order_ms, cents),
        (has_payment, paid_ms, paid_cents),
        (cancelled, cancel_ms, cents),
        (refunded, refund_ms, paid_cents),
    )  # in EVENT_TYPES' order
    order_of = np.concatenate([np.flatnonzero(mask) for mask, _, _ in sides])
    kind = np.concatenate([np.full(int(mask.sum()), k) for k, (mask, _, _) in enumerate(sides)])
    event_ms = np.concatenate([ms[mask] for mask, ms, _ in sides])
    amount = np.concatenate([c[mask] for mask, _, c in sides]) / 100
    take = np.lexsort((kind, order_of, event_ms))[:rows]
    order_of, kind, event_ms, amount = order_of[take], kind[take], event_ms[take], amount[take]

    # Orders numbered by first appearance (rows are in event-time order: their first event).
    used, first_row, index = np.unique(order_of, return_index=True, return_inverse=True)
    count = len(used)
    raw = rng.bytes(8 * count).hex()
    ids = [f"o-{raw[i : i + 16]}" for i in range(0, 16 * count, 16)]
    table = pa.table(
        [
            pa.array(ids).take(pa.array(index)),
            pa.array(EVENT_TYPES).take(pa.array(kind)),
            pa.array(amount, pa.float64()),
            pa.array(event_ms, pa.timestamp("ms", tz="UTC")),
        ],
        schema=_ARROW_SCHEMA,
    )
    return table, expected_outcome(index, kind, event_ms, first_row, timeout_ms, watermark_ms)


def expected_outcome(
    index: np.ndarray,
    kind: np.ndarray,
    event_ms: np.ndarray,
    first_row: np.ndarray,
    timeout_ms: int,
    watermark_ms: int,
) -> dict:
    """Per-order arithmetic on the input (rows in event-time order: `index` the order of
    each, `kind` its code in EVENT_TYPES, `first_row` each order's first row): every event
    is inside its order's window (MAX_SPAN_MS < timeout), so an order's facts are the event
    types it has."""
    count = len(first_row)
    has = np.zeros((count, len(EVENT_TYPES)), dtype=bool)
    has[index, kind] = True
    order, payment, cancel, refund = (has[:, k] for k in range(len(EVENT_TYPES)))
    # matching_state's rules: refunded, cancelled, paid / amount_mismatch, else awaiting.
    awaiting = ~(refund & payment) & ~cancel & ~(order & payment)
    first_ms = event_ms[first_row]
    last_ms = int(event_ms[-1])
    final_watermark = last_ms - watermark_ms
    deadline = first_ms + timeout_ms
    closed = deadline < final_watermark  # strictly, as Spark fires event-time timeouts
    evicted = closed & (deadline + timeout_ms < final_watermark)
    return {
        "orders": count,
        "expired_orders": int((closed & awaiting).sum()),
        "open_orders": int((~closed).sum()),
        "open_orders_bound": int((first_ms > last_ms - timeout_ms).sum()),
        "held_orders": int((~evicted).sum()),
        "event_time_span_s": round((last_ms - int(event_ms[0])) / 1000),
    }


def write_input(
    folder: Path, rows: int, batch_rows: int, seed: int, orders_per_s: float, watermark_ms: int
) -> dict:
    """One Parquet file per micro-batch, in event-time order."""
    table, expected = generate_events(
        rows, seed, orders_per_s=orders_per_s, watermark_ms=watermark_ms
    )
    write_batches(folder, table, batch_rows)
    return expected


def stateless(events: DataFrame, buckets: int) -> DataFrame:
    return matching.bucketed(events, watermark=WATERMARK, buckets=buckets)


def passthrough(events: DataFrame, buckets: int) -> DataFrame:
    return bucketed_state.pass_through(
        matching.bucketed(events, watermark=WATERMARK, buckets=buckets)
    )


def match(events: DataFrame, buckets: int) -> DataFrame:
    """The matching, its output counted on the way to the sink (expired rows, and version-1
    rows: one per order) for the check against the input."""
    changes = matching.transform(
        events, watermark=WATERMARK, timeout_ms=TIMEOUT_MS, buckets=buckets
    )
    return changes.observe(
        CHECK,
        F.sum((F.col("status") == matching_state.EXPIRED).cast("long")).alias("expired"),
        F.sum((F.col("version") == 1).cast("long")).alias("orders"),
    )


VARIANTS: dict[str, Callable[[DataFrame, int], DataFrame]] = {
    "stateless": stateless,
    "passthrough": passthrough,
    "matching": match,
}


def run_variant(
    spark: SparkSession, root: Path, folder: Path, variant: str, tag: str, buckets: int
) -> dict:
    frame = VARIANTS[variant](file_stream(spark, EVENT_SCHEMA, folder), buckets)
    return run_to_noop(frame, root / f"cp-{variant}-{tag}", name=variant)


def check_matching(result: dict, expected: dict) -> None:
    """A matching run must have emitted what the input gives (this module's docstring)."""
    seen = observed(result["progress"], CHECK)
    got = (seen.get("expired", 0), seen.get("orders", 0))
    want = (expected["expired_orders"], expected["orders"])
    if got != want:
        raise RuntimeError(
            f"matching emitted {got[0]:,} expired orders and {got[1]:,} orders; "
            f"the input gives {want[0]:,} and {want[1]:,}"
        )


def run(
    spark: SparkSession,
    work_dir: Path,
    *,
    rows: int,
    batch_rows: int,
    repeat: int = 3,
    buckets: int = BUCKETS,
    orders_per_s: float = ORDERS_PER_S,
    seed: int = 7,
    log=print,
) -> dict:
    """Every variant on one generated input, `repeat` times interleaved; the figures."""
    root = work_dir / f"orders-{rows}"
    shutil.rmtree(root, ignore_errors=True)
    began = time.monotonic()
    log(f"generating {rows:,} order events ({orders_per_s:g} orders/s of event time)")
    folder = root / "input"
    watermark_ms = duration_ms(WATERMARK)
    expected = write_input(folder, rows, batch_rows, seed, orders_per_s, watermark_ms)
    log(
        f"  {expected['orders']:,} orders over {expected['event_time_span_s']:,} s; "
        f"{expected['expired_orders']:,} expire, {expected['open_orders']:,} stay open"
    )

    def run_once(name: str, attempt: str) -> dict:
        return run_variant(spark, root, folder, name, attempt, buckets)

    def check(name: str, result: dict) -> None:
        if name == "matching":
            check_matching(result, expected)

    results = interleaved(list(VARIANTS), repeat, run_once, str, log, check)
    median = medians(results)
    shutil.rmtree(root, ignore_errors=True)
    rate = {name: round(value) for name, value in median.items()}
    return {
        "benchmark": "orders",
        "rows": rows,
        "batch_rows": batch_rows,
        "repeat": repeat,
        "buckets": buckets,
        "orders_per_s": orders_per_s,
        **expected,
        "matching_rows_per_s": rate["matching"],
        "passthrough_rows_per_s": rate["passthrough"],
        "stateless_rows_per_s": rate["stateless"],
        "matching_vs_passthrough": round(median["matching"] / median["passthrough"], 3),
        "matching_vs_stateless": round(median["matching"] / median["stateless"], 3),
        "passthrough_vs_stateless": round(median["passthrough"] / median["stateless"], 3),
        "matching_rows_out": results["matching"][0]["rows_out"],
        "seconds": round(time.monotonic() - began, 1),
    }
