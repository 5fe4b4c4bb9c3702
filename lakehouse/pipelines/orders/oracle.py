"""The orders pipeline's matching semantics in plain Python, independently of Spark: every
order's final state from the events bronze accepted (records with `event_timestamp` in epoch
ms). The oracle of the end-to-end tests (tests/orders.py, from the producer's messages) and
of the chaos audit (audit.py, from the rows bronze holds); spark/jobs/orders/matching_state.py
is the implementation it checks.
"""

from __future__ import annotations

from collections.abc import Iterable

from lakehouse.params import duration_ms
from lakehouse.pipelines.orders import (
    AMOUNT_MISMATCH,
    AWAITING_ORDER,
    AWAITING_PAYMENT,
    CANCELLED,
    DEFAULT_PARAMS,
    EXPIRED,
    ORDER_CANCELLED,
    ORDER_CREATED,
    PAID,
    PAYMENT_RECEIVED,
    PAYMENT_REFUNDED,
    REFUNDED,
)

_DEFAULTS = dict(DEFAULT_PARAMS)
TIMEOUT_MS = duration_ms(_DEFAULTS["order_timeout"], "orders.order_timeout")
WATERMARK_MS = duration_ms(_DEFAULTS["watermark"], "orders.watermark")
FINAL_STATUSES = (PAID, AMOUNT_MISMATCH, CANCELLED, REFUNDED, EXPIRED)


def derived_status(facts: dict[str, dict]) -> str:
    """The status of an order's facts (event type -> its earliest counted record)."""
    if PAYMENT_RECEIVED in facts and PAYMENT_REFUNDED in facts:
        return REFUNDED
    if ORDER_CANCELLED in facts:
        return CANCELLED
    if ORDER_CREATED in facts and PAYMENT_RECEIVED in facts:
        ordered, paid = (round(facts[t]["amount"] * 100) for t in (ORDER_CREATED, PAYMENT_RECEIVED))
        return PAID if ordered == paid else AMOUNT_MISMATCH
    return AWAITING_PAYMENT if ORDER_CREATED in facts else AWAITING_ORDER


def order_facts(records: Iterable[dict], timeout_ms: int = TIMEOUT_MS) -> dict[str, dict]:
    """order id -> {"first_ms", "deadline_ms", "facts": event type -> earliest record}: the
    earliest of each type by event time (ties: the smaller amount), among the events at or
    before the order's deadline (its earliest event time of all + timeout_ms)."""
    by_order: dict[str, list[dict]] = {}
    for record in records:
        by_order.setdefault(record["order_id"], []).append(record)
    result = {}
    for order_id, events in by_order.items():
        first_ms = min(e["event_timestamp"] for e in events)
        deadline_ms = first_ms + timeout_ms
        facts: dict[str, dict] = {}
        for event in sorted(events, key=lambda e: (e["event_timestamp"], e["amount"])):
            if event["event_timestamp"] <= deadline_ms:
                facts.setdefault(event["event_type"], event)
        result[order_id] = {"first_ms": first_ms, "deadline_ms": deadline_ms, "facts": facts}
    return result


def states_of(
    records: Iterable[dict],
    timeout_ms: int = TIMEOUT_MS,
    watermark_ms: int | None = None,
) -> dict[str, dict]:
    """order id -> status, order_amount, paid_amount, order_time_ms, payment_time_ms,
    order_to_payment_ms, from the accepted records (each event once). awaiting_* becomes
    expired once the watermark is past the deadline (strictly); with `watermark_ms` None it
    is past every deadline."""
    states = {}
    for order_id, order in order_facts(records, timeout_ms).items():
        facts = order["facts"]
        status = derived_status(facts)
        if status in (AWAITING_PAYMENT, AWAITING_ORDER) and (
            watermark_ms is None or watermark_ms > order["deadline_ms"]
        ):
            status = EXPIRED
        created, paid = facts.get(ORDER_CREATED), facts.get(PAYMENT_RECEIVED)
        order_ms = created["event_timestamp"] if created else None
        payment_ms = paid["event_timestamp"] if paid else None
        states[order_id] = {
            "status": status,
            "order_amount": created["amount"] if created else None,
            "paid_amount": paid["amount"] if paid else None,
            "order_time_ms": order_ms,
            "payment_time_ms": payment_ms,
            "order_to_payment_ms": (
                payment_ms - order_ms if order_ms is not None and payment_ms is not None else None
            ),
        }
    return states
