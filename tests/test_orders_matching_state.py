"""The order matching's state function alone (no Spark): statuses, duplicates, expiry at the
configured event time, arrival order and batching, bounded state."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from lakehouse.pipelines.orders import STATUSES
from spark.jobs.orders import matching_state as m

TIMEOUT = 30 * 60_000
T0 = 1_767_225_600_000


def event(order: str, kind: str, amount: float, at_s: float) -> dict:
    return {
        "order_id": order,
        "event_type": kind,
        "amount": amount,
        "event_time_ms": T0 + int(at_s * 1000),
    }


def frame(*events: dict) -> pd.DataFrame:
    return pd.DataFrame(list(events), columns=list(m.INPUT_COLUMNS))


def run(batches: list[pd.DataFrame], watermarks: list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Feed the batches in order, each with its watermark; then (all output, last state)."""
    state, outputs = m.empty_state(), []
    for batch, watermark in zip(batches, watermarks, strict=True):
        result = m.step(m.state_from_bytes(m.state_to_bytes(state)), batch, watermark, TIMEOUT)
        state = result.state
        outputs.append(result.output)
    return pd.concat(outputs, ignore_index=True), state


def final(output: pd.DataFrame) -> dict[str, str]:
    latest = output.sort_values("version").groupby("order_id").tail(1)
    return dict(zip(latest["order_id"], latest["status"], strict=True))


CASES = [
    event("paid", "order_created", 10.0, 0),
    event("paid", "payment_received", 10.0, 5),
    event("first", "payment_received", 7.5, 0),
    event("first", "order_created", 7.5, 3),
    event("wrong", "order_created", 10.0, 0),
    event("wrong", "payment_received", 9.99, 1),
    event("cancel", "order_created", 3.0, 0),
    event("cancel", "order_cancelled", 3.0, 60),
    event("refund", "order_created", 4.0, 0),
    event("refund", "payment_received", 4.0, 2),
    event("refund", "payment_refunded", 4.0, 600),
    event("unpaid", "order_created", 2.0, 0),
    event("orphan", "payment_received", 2.0, 0),
    event("too_late", "order_created", 2.0, 0),
    event("too_late", "payment_received", 2.0, 1801),  # after the 30-minute window
]
FINAL = {
    "paid": m.PAID,
    "first": m.PAID,
    "wrong": m.AMOUNT_MISMATCH,
    "cancel": m.CANCELLED,
    "refund": m.REFUNDED,
    "unpaid": m.EXPIRED,
    "orphan": m.EXPIRED,
    "too_late": m.EXPIRED,
}


def test_each_status_and_the_flush_closes_every_order():
    output, state = run([frame(*CASES), frame()], [0, m.FLUSH_WATERMARK_MS])
    assert final(output) == FINAL
    assert set(FINAL.values()) | {m.AWAITING_PAYMENT, m.AWAITING_ORDER} == set(STATUSES)
    assert state.empty  # closed and then, a timeout later, evicted
    first = output[output["order_id"] == "paid"].iloc[0]
    assert first["order_to_payment_ms"] == 5000 and first["paid_amount"] == 10.0
    early = output[output["order_id"] == "first"].iloc[0]
    assert early["order_to_payment_ms"] == -3000  # paid before the order was placed


def test_a_duplicate_never_changes_a_state_twice():
    once, _ = run([frame(*CASES)], [0])
    again, state = run([frame(*CASES), frame(*CASES), frame(*CASES[:5])], [0, 0, 0])
    assert len(again) == len(once)  # the repeats emitted nothing
    assert (again.groupby("order_id")["status"].count() == 1).all()
    assert m.open_count(state) == len(FINAL)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_arrival_order_and_batching_do_not_change_final_states(seed):
    rng = random.Random(seed)
    shuffled = CASES[:]
    rng.shuffle(shuffled)
    cut = rng.randrange(1, len(shuffled))
    output, _ = run(
        [frame(*shuffled[:cut]), frame(*shuffled[cut:]), frame()],
        [0, 0, m.FLUSH_WATERMARK_MS],
    )
    assert final(output) == FINAL
    # versions count each order's emitted rows, from 1
    for _, rows in output.groupby("order_id"):
        assert sorted(rows["version"]) == list(range(1, len(rows) + 1))


def test_expiry_happens_at_the_deadline_not_earlier():
    deadline = T0 + TIMEOUT
    _, state = run([frame(event("unpaid", "order_created", 2.0, 0))], [0])
    at_deadline = m.step(state, [], deadline, TIMEOUT)  # W == deadline: not past it yet
    assert at_deadline.output.empty and m.open_count(at_deadline.state) == 1
    assert at_deadline.next_timeout_ms == deadline
    past = m.step(at_deadline.state, [], deadline + 1, TIMEOUT)
    row = past.output.iloc[0]
    assert (row["status"], row["previous_status"], row["version"]) == (
        m.EXPIRED,
        m.AWAITING_PAYMENT,
        2,
    )
    assert row["changed_at_ms"] == deadline
    assert m.open_count(past.state) == 0 and len(past.state) == 1
    # A straggler inside the retention starts no second life of the order.
    straggler = m.step(
        past.state, frame(event("unpaid", "payment_received", 2.0, 1900)), deadline + 2, TIMEOUT
    )
    assert straggler.output.empty
    assert straggler.next_timeout_ms == deadline + TIMEOUT
    assert m.step(straggler.state, [], deadline + TIMEOUT + 1, TIMEOUT).state.empty


def test_a_refund_after_payment_is_a_second_change_with_the_next_version():
    output, _ = run(
        [
            frame(event("o", "order_created", 4.0, 0), event("o", "payment_received", 4.0, 1)),
            frame(event("o", "payment_refunded", 4.0, 300)),
        ],
        [0, 0],
    )
    assert list(output["status"]) == [m.PAID, m.REFUNDED]
    assert list(output["previous_status"].fillna("")) == ["", m.PAID]
    assert list(output["version"]) == [1, 2]


def test_state_stays_bounded_by_the_open_window():
    """Orders a minute apart for three hours: only the last windows' orders stay held."""
    state = m.empty_state()
    held = []
    for minute in range(180):
        batch = frame(
            event(f"o{minute}", "order_created", 1.0, minute * 60),
            event(f"o{minute}", "payment_received", 1.0, minute * 60 + 5),
        )
        watermark = T0 + minute * 60_000 - 120_000
        result = m.step(state, batch, watermark, TIMEOUT)
        state = result.state
        held.append((m.open_count(state), len(state)))
    opened, total = held[-1]
    assert opened <= 33  # the orders of the last 30 minutes (+ the watermark's 2)
    assert total <= 64  # and the closed ones of the window before
    assert max(h[1] for h in held) <= 64
