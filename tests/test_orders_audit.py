"""The orders pipeline's chaos audit alone (no Spark, no services): a lake built from the
test oracle reconciles exactly, and each kind of damage shows on its own sink."""

from __future__ import annotations

import inspect
import json
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

import pandas as pd
import pytest

from lakehouse.pipelines.orders import ORDERS_TOPIC, PAYMENTS_TOPIC
from lakehouse.settings import Settings
from producers import orders as producer
from producers.orders import Message, self_check, simulate
from producers.orders_audit import (
    PRIMER_EVENT,
    PRIMER_ORDER,
    SENTINEL_EVENT,
    SENTINEL_ORDER,
    STATE_COLUMNS,
    STATE_SINKS,
    Feed,
    OrdersAudit,
    marker_record,
    mongo_frame,
    sentinel_record,
)
from tests.orders import (
    AWAITING_PAYMENT,
    FINAL_STATUSES,
    WATERMARK_MS,
    accepted_events,
    expected_quarantine,
    final_states,
)

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
RATE = 2.0  # 500 ms a message: 4000 messages span 33 minutes, orders reach every ending
COUNT = 4_000
SEED = 11
SENTINEL_MS = T0 + 24 * 3600 * 1000
SINKS = {
    "kafka.orders",
    "kafka.payments",
    "delta.order_events",
    "delta.quarantine_orders",
    "delta.order_state_changes",
    "delta.order_outcomes",
    "postgres.order_status",
    "mongo.orders",
}


@dataclass(frozen=True)
class FakeLayout:
    namespace: str = "chaosaudit"

    def topic(self, name: str) -> str:
        return f"{name}-{self.namespace}"


@pytest.fixture(scope="module")
def run() -> tuple[OrdersAudit, dict, list[Message]]:
    """The audit of a run, the producer's report and what it sent (a simulated clock
    stands in for the wall clock: the same messages, at the planned times)."""
    audit = OrdersAudit()
    layout = FakeLayout()
    feed = Feed(seed=SEED, tick_ms=1000 / RATE)
    messages, _ = simulate(COUNT, start_ms=T0, step_ms=round(feed.tick_ms), **feed.simulator())
    report = producer.OrdersReport()
    for message in messages:
        report.add(message)
    topics = {base: layout.topic(base) for base in (ORDERS_TOPIC, PAYMENTS_TOPIC)}
    produced = report.as_dict(
        topics=topics,
        seed=SEED,
        tick_ms=feed.tick_ms,
        clock="live",
        clock_end_ms=0,
        seconds=COUNT / RATE,
    )
    return audit, produced, messages


def sentinel_message() -> Message:
    value = json.dumps(sentinel_record(SENTINEL_MS)).encode()
    return Message("events", ORDERS_TOPIC, SENTINEL_ORDER.encode(), value)


def primer_message() -> Message:
    value = json.dumps(marker_record(PRIMER_ORDER, PRIMER_EVENT, T0 - 1000)).encode()
    return Message("events", ORDERS_TOPIC, PRIMER_ORDER.encode(), value)


def times(ms: pd.Series) -> pd.Series:
    return pd.to_datetime(ms, unit="ms", utc=True)


def perfect_lake(messages: list[Message]) -> dict:
    """Every sink as a correct run leaves it (what read_back returns)."""
    sent = [primer_message(), *messages, sentinel_message()]
    events = pd.DataFrame(accepted_events(sent))
    events["event_time"] = times(events["event_timestamp"])
    watermark_ms = SENTINEL_MS - WATERMARK_MS
    states = pd.DataFrame.from_dict(final_states(sent, watermark_ms=watermark_ms), orient="index")
    states = states.rename_axis("order_id").reset_index()
    states["order_time"] = times(states["order_time_ms"])
    states["payment_time"] = times(states["payment_time_ms"])
    states = states[STATE_COLUMNS]
    # A history as one batching gives it: a first change, then the final one when it differs.
    first = states.assign(status=AWAITING_PAYMENT, version=1)
    last = states.assign(version=2)[states["status"] != AWAITING_PAYMENT]
    postgres = states.astype(object).assign(
        order_amount=[None if pd.isna(a) else Decimal(f"{a:.2f}") for a in states["order_amount"]]
    )
    documents = [
        {("_id" if k == "order_id" else k): v for k, v in row.items() if not pd.isna(v)}
        for row in states.assign(
            order_time=states["order_time"].dt.tz_localize(None),
            payment_time=states["payment_time"].dt.tz_localize(None),
        ).to_dict("records")
    ]
    by_topic = Counter(m.topic for m in messages)
    return {
        "kafka.orders": by_topic[ORDERS_TOPIC] + 2,  # and the primer and the sentinel
        "kafka.payments": by_topic[PAYMENTS_TOPIC],
        "delta.order_events": events,
        "delta.quarantine_orders": pd.DataFrame(
            {"reason": [r for r, n in expected_quarantine(messages).items() for _ in range(n)]}
        ),
        "delta.order_state_changes": pd.concat([first, last], ignore_index=True),
        "delta.order_outcomes": states,
        "postgres.order_status": postgres,
        "mongo.orders": mongo_frame(documents),
    }


def damaged(result: dict) -> dict[str, tuple[int, int]]:
    """The sinks with lost or duplicated rows: name -> (lost, duplicated)."""
    return {
        name: (line["lost"], line["duplicated"])
        for name, line in result["sinks"].items()
        if line["lost"] or line["duplicated"]
    }


def late_row(messages: list[Message]) -> pd.DataFrame:
    record = json.loads(next(m for m in messages if m.kind == "late").value)
    return pd.DataFrame(
        [{**record, "event_time": pd.Timestamp(record["event_timestamp"], unit="ms", tz="UTC")}]
    )


def test_the_command_line_and_the_regeneration_share_the_options(run):
    audit, produced, messages = run
    command = audit.producer_command(Settings(), FakeLayout(), RATE, SEED)
    assert command[1:5] == ["-m", "producers.orders", f"--rate={RATE}", "--namespace=chaosaudit"]
    assert "--late-by-s=3600" in command and not any(a.startswith("--start") for a in command)
    accepted = set(inspect.signature(producer.main).parameters)
    assert {a[2:].split("=")[0].replace("-", "_") for a in command[3:]} <= accepted
    sent = audit.sent(produced)
    assert Counter(m.kind for m in messages) == Counter(
        events=len(sent.on_time),
        duplicates=sum(sent.repeats.values()),
        late=sum(sent.late.values()),
        malformed=sum(sent.malformed.values()),
    )
    assert sent.on_time.keys() == {e["event_id"] for e in accepted_events(messages)}
    # Another seed is another stream.
    assert audit.sent({**produced, "seed": SEED + 1}).on_time.keys() != sent.on_time.keys()


def test_the_sentinel_is_a_valid_order_far_ahead():
    message = sentinel_message()
    assert self_check(message) is None
    record = json.loads(message.value)
    assert record["event_id"] == SENTINEL_EVENT and record["amount"] > 0


def test_a_perfect_lake_reconciles_exactly(run):
    audit, produced, messages = run
    found = perfect_lake(messages)
    result = audit.reconcile(produced, found)
    assert set(result["sinks"]) == SINKS
    assert damaged(result) == {}
    assert all(line["expected"] > 0 for line in result["sinks"].values())
    late = result["late"]
    assert late["sent"] > 0 and late["dropped"] == late["sent"]
    assert result["duplicates"]["sent"] > 0
    assert result["duplicates"]["dropped"] == result["duplicates"]["sent"]
    statuses = set(found["delta.order_outcomes"]["status"])
    assert statuses >= set(FINAL_STATUSES) | {AWAITING_PAYMENT}  # the sentinel waits


def test_a_missing_bronze_row_is_lost(run):
    audit, produced, messages = run
    found = perfect_lake(messages)
    found["delta.order_events"] = found["delta.order_events"].iloc[1:]
    line = audit.reconcile(produced, found)["sinks"]["delta.order_events"]
    assert (line["lost"], line["duplicated"]) == (1, 0)


def test_a_repeated_state_change_is_duplicated(run):
    audit, produced, messages = run
    found = perfect_lake(messages)
    history = found["delta.order_state_changes"]
    found["delta.order_state_changes"] = pd.concat([history, history.iloc[[0]]])
    assert damaged(audit.reconcile(produced, found)) == {"delta.order_state_changes": (0, 1)}


def test_a_history_ending_in_another_status_or_with_a_gap_is_lost(run):
    audit, produced, messages = run
    found = perfect_lake(messages)
    history = found["delta.order_state_changes"]
    found["delta.order_state_changes"] = history[history["version"] == 2].iloc[1:]
    lost, duplicated = damaged(audit.reconcile(produced, found))["delta.order_state_changes"]
    assert lost > 0 and duplicated == 0  # versions 1 missing, and one order's final change


def test_a_wrong_status_in_postgres_is_lost_and_duplicated(run):
    audit, produced, messages = run
    found = perfect_lake(messages)
    rows = found["postgres.order_status"].copy()
    rows.loc[rows["status"] == "paid", "status"] = "expired"
    wrong = int((found["postgres.order_status"]["status"] == "paid").sum())
    found["postgres.order_status"] = rows
    assert wrong > 0
    assert damaged(audit.reconcile(produced, found)) == {"postgres.order_status": (wrong, wrong)}


def test_a_late_event_in_bronze_is_duplicated_there(run):
    audit, produced, messages = run
    found = perfect_lake(messages)
    events = found["delta.order_events"]
    found["delta.order_events"] = pd.concat([events, late_row(messages)], ignore_index=True)
    result = audit.reconcile(produced, found)
    line = result["sinks"]["delta.order_events"]
    assert (line["lost"], line["duplicated"]) == (0, 1)
    assert result["late"]["accepted"] == 1


def test_the_primer_is_expected_in_bronze(run):
    audit, produced, messages = run
    found = perfect_lake(messages)
    events = found["delta.order_events"]
    found["delta.order_events"] = events[events["event_id"] != PRIMER_EVENT]
    line = audit.reconcile(produced, found)["sinks"]["delta.order_events"]
    assert (line["lost"], line["duplicated"]) == (1, 0)
    assert not audit.settled(produced, found)


def test_settled_waits_for_the_sentinel_and_every_final_state(run):
    audit, produced, messages = run
    found = perfect_lake(messages)
    events = found["delta.order_events"]
    without_sentinel = {**found, "delta.order_events": events[events["event_id"] != SENTINEL_EVENT]}
    assert not audit.settled(produced, without_sentinel)
    for sink in STATE_SINKS:
        behind = found[sink].copy()
        behind.loc[behind["status"] == "expired", "status"] = AWAITING_PAYMENT
        assert not audit.settled(produced, {**found, sink: behind}), sink
    assert audit.settled(produced, found)
