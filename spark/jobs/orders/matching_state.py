"""The order matching's state function in plain pandas: no Spark here, so it is unit-tested
alone.

One call handles one *bucket* (many orders) of one micro-batch: the bucket's new order
events (INPUT_COLUMNS, in pandas chunks, possibly none), its orders as state, the query's
event-time watermark and the order timeout.

Semantics (docs/architecture.md, "The orders pipeline"):
- **Facts.** Per order, the earliest event of each type (by event time, ties by the smaller
  amount): order_created, payment_received, order_cancelled, payment_refunded. Only events
  inside the order's window count: first_ms is the earliest event time of the order, the
  deadline first_ms + timeout_ms; a later event is ignored.
- **Status**, derived from the facts, the first rule that holds:
  refund and payment -> refunded; cancellation -> cancelled; order and payment -> paid
  (same amount in cents) or amount_mismatch; order -> awaiting_payment; else awaiting_order.
- **Closing.** Once the watermark W is past the deadline (strictly, as Spark fires
  event-time timeouts), the order closes: awaiting_payment and awaiting_order become
  expired, every other status stays as it is. A closed order keeps one row for another
  timeout (events for it are ignored, so a straggler cannot open a second life of the same
  order id), then leaves the state.
- **Emission.** A call emits one row per order whose status or facts changed in it, with
  the order's version (1 for its first row, +1 per row after). A duplicate event changes no
  fact (the earliest of a type stays the earliest), so it emits nothing. Several changes
  within one call come out as one row: the stream reports the state each micro-batch
  ended in.
- **Why arrival order does not change the final state.** Every fact is a minimum over the
  events counted, and the deadline only moves earlier as events arrive, so a fact once
  outside the window stays outside. The facts of an order are therefore those of all its
  counted events taken at once, in any order and any split into calls. An order closes only
  after W passes its deadline; any of its events inside the window that arrives later is
  behind W, and bronze drops it as late before it reaches this function.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from lakehouse.pipelines.orders import (
    AMOUNT_MISMATCH,
    AWAITING_ORDER,
    AWAITING_PAYMENT,
    CANCELLED,
    EXPIRED,
    ORDER_CANCELLED,
    ORDER_CREATED,
    PAID,
    PAYMENT_RECEIVED,
    PAYMENT_REFUNDED,
    REFUNDED,
)

AWAITING = (AWAITING_PAYMENT, AWAITING_ORDER)

INPUT_COLUMNS: tuple[str, ...] = ("order_id", "event_type", "amount", "event_time_ms")
# The fact columns each event type sets: (time, amount in cents or None).
FACTS: dict[str, tuple[str, str | None]] = {
    ORDER_CREATED: ("order_ms", "order_cents"),
    PAYMENT_RECEIVED: ("paid_ms", "paid_cents"),
    ORDER_CANCELLED: ("cancel_ms", None),
    PAYMENT_REFUNDED: ("refund_ms", None),
}
FACT_COLUMNS: tuple[str, ...] = tuple(c for pair in FACTS.values() for c in pair if c is not None)
STATE_COLUMNS: tuple[str, ...] = (
    "order_id",
    "first_ms",
    *FACT_COLUMNS,
    "status",
    "version",
    "closed",
)
OUTPUT_COLUMNS: tuple[str, ...] = (
    "order_id",
    "status",
    "previous_status",
    "version",
    "order_amount",
    "paid_amount",
    "order_time_ms",
    "payment_time_ms",
    "order_to_payment_ms",
    "changed_at_ms",
    "deadline_ms",
)
FLUSH_WATERMARK_MS = 2**62  # a watermark past every deadline: closes every order

_STATE_SCHEMA = pa.schema(
    [
        ("order_id", pa.string()),
        ("first_ms", pa.int64()),
        *((c, pa.int64()) for c in FACT_COLUMNS),
        ("status", pa.string()),
        ("version", pa.int64()),
        ("closed", pa.bool_()),
    ]
)
_OUTPUT_DTYPES = {
    "order_id": object,
    "status": object,
    "previous_status": object,
    "version": "int64",
    "order_amount": "float64",
    "paid_amount": "float64",
    "order_time_ms": "Int64",
    "payment_time_ms": "Int64",
    "order_to_payment_ms": "Int64",
    "changed_at_ms": "int64",
    "deadline_ms": "int64",
}


@dataclass
class StepResult:
    state: pd.DataFrame  # the bucket's orders still held (STATE_COLUMNS)
    output: pd.DataFrame  # one row per order changed by this call (OUTPUT_COLUMNS)
    next_timeout_ms: int | None  # the next watermark that closes or evicts one; None if empty


def empty_state() -> pd.DataFrame:
    return _STATE_SCHEMA.empty_table().to_pandas(types_mapper=_nullable)


def empty_output() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _OUTPUT_DTYPES.items()})


def _nullable(arrow_type: pa.DataType):
    return pd.Int64Dtype() if pa.types.is_int64(arrow_type) else None


def _events(chunks: Iterable[pd.DataFrame]) -> pd.DataFrame | None:
    frames = [chunk[list(INPUT_COLUMNS)] for chunk in chunks if len(chunk)]
    return pd.concat(frames, ignore_index=True) if frames else None


def _fact_rows(state: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """(order_id, event_type, ms, cents): the state's facts and the new events, alike."""
    rows = [
        pd.DataFrame(
            {
                "order_id": events["order_id"].to_numpy(),
                "event_type": events["event_type"].to_numpy(),
                "ms": events["event_time_ms"].astype("int64").to_numpy(),
                "cents": np.rint(events["amount"].astype("float64").to_numpy() * 100),
            }
        )
    ]
    for event_type, (ms, cents) in FACTS.items():
        known = state[state[ms].notna()]
        rows.append(
            pd.DataFrame(
                {
                    "order_id": known["order_id"].to_numpy(),
                    "event_type": event_type,
                    "ms": known[ms].astype("int64").to_numpy(),
                    "cents": known[cents].astype("float64").to_numpy() if cents else np.nan,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def _merge(open_orders: pd.DataFrame, events: pd.DataFrame, timeout_ms: int) -> pd.DataFrame:
    """Open orders and new events folded into one row per order: first_ms, the facts inside
    its window, and the previous status and version (null/0 for a new order)."""
    first_ms = (
        pd.concat(
            [
                open_orders[["order_id", "first_ms"]].astype({"first_ms": "int64"}),
                events[["order_id"]].assign(first_ms=events["event_time_ms"].astype("int64")),
            ]
        )
        .groupby("order_id", sort=False)["first_ms"]
        .min()
    )
    facts = _fact_rows(open_orders, events)
    facts = facts[facts["ms"].to_numpy() <= facts["order_id"].map(first_ms).to_numpy() + timeout_ms]
    earliest = facts.sort_values(["order_id", "event_type", "ms", "cents"]).drop_duplicates(
        ["order_id", "event_type"]
    )
    merged = pd.DataFrame({"order_id": first_ms.index, "first_ms": first_ms.to_numpy()})
    merged = merged.set_index("order_id")
    for event_type, (ms, cents) in FACTS.items():
        of_type = earliest[earliest["event_type"] == event_type].set_index("order_id")
        merged[ms] = of_type["ms"].reindex(merged.index).astype("Int64")
        if cents:
            merged[cents] = of_type["cents"].reindex(merged.index).round().astype("Int64")
    previous = open_orders.set_index("order_id")[["status", "version"]].reindex(merged.index)
    merged["previous_status"] = previous["status"]
    merged["previous_version"] = previous["version"].fillna(0).astype("int64")
    merged["closed"] = False
    return merged.reset_index()


def derive_status(orders: pd.DataFrame) -> np.ndarray:
    """The status each order's facts give (the rules in this module's docstring)."""
    has = {
        c: orders[c].notna().to_numpy() for c in ("order_ms", "paid_ms", "cancel_ms", "refund_ms")
    }
    same_amount = (orders["order_cents"] == orders["paid_cents"]).fillna(False).to_numpy(bool)
    matched = has["order_ms"] & has["paid_ms"]
    return np.select(
        [
            has["refund_ms"] & has["paid_ms"],
            has["cancel_ms"],
            matched & same_amount,
            matched,
            has["order_ms"],
        ],
        [REFUNDED, CANCELLED, PAID, AMOUNT_MISMATCH, AWAITING_PAYMENT],
        default=AWAITING_ORDER,
    ).astype(object)


def _changed(merged: pd.DataFrame, before: pd.DataFrame) -> np.ndarray:
    """Per merged order: did its status or a fact change against `before` (same index)?"""
    changed = merged["status"].to_numpy() != before["status"].to_numpy()
    for column in FACT_COLUMNS:
        now, then = merged[column], before[column]
        changed |= (now.isna() != then.isna()).to_numpy() | (now != then).fillna(False).to_numpy(
            bool
        )
    return changed


def _output(rows: pd.DataFrame, timeout_ms: int) -> pd.DataFrame:
    if rows.empty:
        return empty_output()
    fact_times = rows[[ms for ms, _ in FACTS.values()]].max(axis=1, skipna=True)
    deadline = rows["first_ms"].astype("int64") + timeout_ms
    expired = rows["status"] == EXPIRED
    out = pd.DataFrame(
        {
            "order_id": rows["order_id"].to_numpy(),
            "status": rows["status"].to_numpy(),
            "previous_status": rows["previous_status"].to_numpy(),
            "version": rows["version"].astype("int64").to_numpy(),
            "order_amount": (rows["order_cents"].astype("Float64") / 100).to_numpy(
                "float64", na_value=np.nan
            ),
            "paid_amount": (rows["paid_cents"].astype("Float64") / 100).to_numpy(
                "float64", na_value=np.nan
            ),
            "order_time_ms": rows["order_ms"].to_numpy(),
            "payment_time_ms": rows["paid_ms"].to_numpy(),
            "order_to_payment_ms": (rows["paid_ms"] - rows["order_ms"]).to_numpy(),
            "changed_at_ms": np.where(expired, deadline, fact_times.fillna(deadline)).astype(
                "int64"
            ),
            "deadline_ms": deadline.to_numpy(),
        }
    )
    return out.astype(_OUTPUT_DTYPES, copy=False)


def step(
    state: pd.DataFrame,
    chunks: pd.DataFrame | Iterable[pd.DataFrame],
    watermark_ms: int,
    timeout_ms: int,
) -> StepResult:
    """One micro-batch of one bucket: fold `chunks` (INPUT_COLUMNS) into the open orders,
    close the orders whose deadline the watermark passed, evict closed orders a timeout
    later, and emit the orders that changed. Does not modify its arguments."""
    events = _events([chunks] if isinstance(chunks, pd.DataFrame) else chunks)
    is_closed = state["closed"].to_numpy(bool)
    closed, open_orders = state[is_closed], state[~is_closed]
    if events is not None:
        # A closed order's id takes no further events (see "Closing").
        events = events[~events["order_id"].isin(closed["order_id"])]
    # Only the orders with new events or a deadline behind the watermark can change; the
    # rest of the state is carried over as it is (a call costs what it touches).
    touched = (
        open_orders["order_id"].isin(events["order_id"]).to_numpy(bool)
        if events is not None and len(events)
        else np.zeros(len(open_orders), bool)
    )
    due = open_orders["first_ms"].astype("int64").to_numpy() + timeout_ms < watermark_ms
    untouched = open_orders[~touched & ~due]
    closing_only = open_orders[~touched & due]
    parts = [
        closing_only.assign(
            previous_status=closing_only["status"], previous_version=closing_only["version"]
        )
    ]
    if touched.any() or (events is not None and len(events)):
        parts.append(_merge(open_orders[touched], events, timeout_ms))
    merged = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    candidates = open_orders[touched | due]
    before = candidates.set_index("order_id").reindex(merged["order_id"]).reset_index(drop=True)
    merged = merged.reset_index(drop=True)
    status = derive_status(merged)
    deadline = merged["first_ms"].astype("int64").to_numpy() + timeout_ms
    closing = deadline < watermark_ms
    status = np.where(closing & np.isin(status, AWAITING), EXPIRED, status)
    merged["status"] = status
    merged["closed"] = closing
    changed = _changed(merged, before)
    merged["version"] = merged["previous_version"].astype("int64") + changed.astype("int64")
    output = _output(merged[changed], timeout_ms)

    held = pd.concat([closed, untouched, merged[list(STATE_COLUMNS)]], ignore_index=True)
    held_deadline = held["first_ms"].astype("int64").to_numpy() + timeout_ms
    held_closed = held["closed"].to_numpy(bool)
    evicted = held_closed & (held_deadline + timeout_ms < watermark_ms)
    held = held[~evicted].reset_index(drop=True)
    fires = np.where(
        held_closed[~evicted], held_deadline[~evicted] + timeout_ms, held_deadline[~evicted]
    )
    next_timeout = int(fires.min()) if len(fires) else None
    return StepResult(held.astype({"version": "int64", "closed": bool}), output, next_timeout)


def open_count(state: pd.DataFrame) -> int:
    """Orders still waiting for their deadline (the rest are closed, kept to absorb
    stragglers)."""
    return int((~state["closed"].to_numpy(bool)).sum())


def state_to_bytes(state: pd.DataFrame) -> bytes:
    """The bucket's orders as one Arrow IPC stream."""
    table = pa.Table.from_pandas(
        state[list(STATE_COLUMNS)], schema=_STATE_SCHEMA, preserve_index=False
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, _STATE_SCHEMA) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def state_from_bytes(blob: bytes) -> pd.DataFrame:
    table = pa.ipc.open_stream(pa.py_buffer(blob)).read_all()
    if not table.schema.equals(_STATE_SCHEMA):
        raise ValueError(f"not an orders state: {table.schema}")
    return table.to_pandas(types_mapper=_nullable)
