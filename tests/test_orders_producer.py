"""The orders simulator's pure side: determinism, the mix of plans and kinds, the reasons it
intends, late and duplicate messages, the report, the CLI against a fake producer (no
Kafka), and the oracle of tests/orders.py on crafted and simulated inputs."""

import json
import random
from collections import Counter, defaultdict
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from lakehouse.contracts import UNPARSEABLE
from lakehouse.pipelines.orders import (
    EVENT,
    EVENT_TYPES,
    ORDER_CANCELLED,
    ORDER_CREATED,
    ORDERS_TOPIC,
    PAYMENT_RECEIVED,
    PAYMENT_REFUNDED,
    PAYMENTS_TOPIC,
)
from producers import orders
from producers.activity import KINDS, WallClock
from producers.orders import (
    MALFORMED_REASONS,
    PLANS,
    RECENT,
    TOPIC_OF,
    Message,
    OrdersReport,
    OrdersSimulator,
    describe,
    self_check,
    simulate,
)
from tests.orders import (
    AMOUNT_MISMATCH,
    AWAITING_ORDER,
    AWAITING_PAYMENT,
    CANCELLED,
    EXPIRED,
    PAID,
    REFUNDED,
    STATUSES,
    TIMEOUT_MS,
    accepted_events,
    expected_counts,
    expected_quarantine,
    final_states,
    producer_command,
    status_counts,
)

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIXED = {"late": 0.05, "duplicates": 0.05, "malformed": 0.05}
MINUTE = 60_000
# The status each plan ends in when all its events are counted.
PLAN_STATUS = {
    "paid": PAID,
    "mismatch": AMOUNT_MISMATCH,
    "refund": REFUNDED,
    "cancel_unpaid": CANCELLED,
    "cancel_paid": REFUNDED,  # a refund of a payment outranks the cancellation
    "missing_payment": EXPIRED,
    "missing_order": EXPIRED,
}


def first(n, step_ms=100, **options):
    return simulate(n, start_ms=START_MS, step_ms=step_ms, **options)[0]


def records_by_order(messages, kinds=("events", "late")):
    """order id -> its (message, record) pairs in sending order."""
    by_order = defaultdict(list)
    for message in messages:
        if message.kind in kinds:
            by_order[message.key.decode()].append((message, json.loads(message.value)))
    return by_order


def report_of(messages, clock_end_ms):
    report = OrdersReport()
    for message in messages:
        report.add(message)
    topics = {ORDERS_TOPIC: ORDERS_TOPIC, PAYMENTS_TOPIC: PAYMENTS_TOPIC}
    return report.as_dict(
        topics=topics,
        seed=42,
        tick_ms=100,
        clock="simulated",
        clock_end_ms=clock_end_ms,
        seconds=1.0,
    )


# ---- generation -----------------------------------------------------------------------


def test_same_seed_same_messages_other_seed_others():
    messages, end = simulate(3000, start_ms=START_MS, seed=5, **MIXED)
    again, end_again = simulate(3000, start_ms=START_MS, seed=5, **MIXED)
    assert messages == again and end == end_again == START_MS + 3000 * 100
    assert [m.value for m in first(3000, seed=5)] != [m.value for m in first(3000, seed=6)]
    shifted, _ = simulate(3000, start_ms=START_MS + 1, seed=5, **MIXED)
    assert [m.value for m in shifted] != [m.value for m in messages]


def test_the_draws_do_not_depend_on_the_clock():
    def shape(message):
        record = json.loads(message.value) if message.kind != "malformed" else {}
        return message.kind, message.key, record.get("event_id"), record.get("event_type")

    simulated = first(800, step_ms=250, **MIXED)
    stream = OrdersSimulator(**MIXED).messages(WallClock(), tick_ms=250)
    live = [next(stream) for _ in range(800)]
    assert [shape(m) for m in simulated] == [shape(m) for m in live]


def test_every_valid_message_meets_the_contract_on_its_topic_keyed_by_its_order():
    messages = first(5000, **MIXED)
    valid = [m for m in messages if m.kind != "malformed"]
    for message in valid:
        record = json.loads(message.value)
        assert EVENT.violation(record) is None, record
        assert record["schema_version"] == 1
        assert message.key == record["order_id"].encode()
        assert message.topic == TOPIC_OF[record["event_type"]]
        assert message.event_time_ms == record["event_timestamp"]
        assert message.event_type == record["event_type"]
        assert record["amount"] > 0 and round(record["amount"], 2) == record["amount"]
    assert {m.event_type for m in valid} == set(EVENT_TYPES)
    assert {m.topic for m in messages} == {ORDERS_TOPIC, PAYMENTS_TOPIC}
    event_ids = [json.loads(m.value)["event_id"] for m in valid if m.kind != "duplicates"]
    assert len(event_ids) == len(set(event_ids))


def test_every_malformed_record_gets_the_reason_the_contract_gives():
    messages = first(20000, malformed=0.1)
    malformed = [m for m in messages if m.kind == "malformed"]
    assert 0.08 < len(malformed) / len(messages) < 0.12
    assert {m.reason for m in malformed} == set(MALFORMED_REASONS.values())
    not_json = mistyped = 0
    for message in malformed:
        assert self_check(message) == message.reason
        try:
            record = json.loads(message.value)
        except ValueError:
            assert message.reason == UNPARSEABLE
            not_json += 1
            continue
        assert EVENT.violation(record) == message.reason, record
        mistyped += message.reason == UNPARSEABLE
        if message.reason == "missing_order_id":
            assert "order_id" not in record
        if message.reason == "non_positive_amount":
            assert record["amount"] < 0
    assert not_json and mistyped  # both ways of being unparseable_or_mistyped occur
    # valid messages pass the same check
    assert all(self_check(m) is None for m in first(2000, **MIXED) if m.kind != "malformed")


def test_each_order_follows_its_plan_within_well_under_its_window():
    messages = first(30000, late=0.0)
    by_order = records_by_order(messages)
    assert len(by_order) > 5000
    spans, payment_gaps = [], []
    for order_id, pairs in by_order.items():
        plan = pairs[0][0].plan
        assert plan in PLANS and all(m.plan is None for m, _ in pairs[1:]), order_id
        types = [r["event_type"] for _, r in pairs]
        assert len({r["customer_id"] for _, r in pairs}) == 1
        stamps = [r["event_timestamp"] for _, r in pairs]
        assert stamps == sorted(stamps)
        spans.append(stamps[-1] - stamps[0])
        if pairs[-1][0].last:
            assert [m.last for m, _ in pairs].count(True) == 1
            expected = {
                "paid": {ORDER_CREATED, PAYMENT_RECEIVED},
                "mismatch": {ORDER_CREATED, PAYMENT_RECEIVED},
                "refund": {ORDER_CREATED, PAYMENT_RECEIVED, PAYMENT_REFUNDED},
                "cancel_unpaid": {ORDER_CREATED, ORDER_CANCELLED},
                "cancel_paid": set(EVENT_TYPES),
                "missing_payment": {ORDER_CREATED},
                "missing_order": {PAYMENT_RECEIVED},
            }[plan]
            assert sorted(types) == sorted(expected), (plan, types)
        amounts = {r["event_type"]: r["amount"] for _, r in pairs}
        if PAYMENT_REFUNDED in amounts:
            assert amounts[PAYMENT_REFUNDED] == amounts[PAYMENT_RECEIVED]
            assert types.index(PAYMENT_REFUNDED) > types.index(PAYMENT_RECEIVED)
        if ORDER_CANCELLED in amounts:
            assert types[-1] in (ORDER_CANCELLED, PAYMENT_REFUNDED)
        if ORDER_CREATED in amounts and PAYMENT_RECEIVED in amounts:
            same = amounts[ORDER_CREATED] == amounts[PAYMENT_RECEIVED]
            assert same == (plan != "mismatch"), (plan, amounts)
            payment_gaps.append(
                abs(stamps[types.index(PAYMENT_RECEIVED)] - stamps[types.index(ORDER_CREATED)])
            )
    assert max(spans) < 20 * MINUTE  # the window is 30 minutes
    payment_gaps.sort()
    assert payment_gaps[0] >= 1_000 and payment_gaps[-1] < 5 * MINUTE
    assert 5_000 < payment_gaps[len(payment_gaps) // 2] < 2 * MINUTE  # seconds to minutes


def test_orders_interleave_many_at_once_and_at_most_concurrent():
    def most_open(messages):
        open_orders: set[bytes] = set()
        peak = 0
        for message in messages:
            if message.plan and not message.last:
                open_orders.add(message.key)
            elif message.last:
                open_orders.discard(message.key)
            peak = max(peak, len(open_orders))
        return peak

    assert most_open(first(20000)) > 100
    capped = first(5000, concurrent=5, late=0.0)
    assert most_open(capped) == 5
    # a small pool opens fewer orders but keeps the planned delays, as does any step
    streams = (capped, first(20000, step_ms=1000, late=0.0), first(20000, step_ms=3000, late=0.0))
    spans = [
        pairs[-1][1]["event_timestamp"] - pairs[0][1]["event_timestamp"]
        for messages in streams
        for pairs in records_by_order(messages).values()
    ]
    assert max(spans) < 20 * MINUTE
    # the order of the stream is not the order of the orders: follow-ups of earlier orders
    # come between the first events of later ones
    messages = first(2000, late=0.0)
    firsts = [m.key for m in messages if m.plan]
    keys = [m.key for m in messages if m.kind == "events"]
    assert keys != firsts and len(set(keys)) == len(firsts)


def test_shares_are_roughly_honoured():
    options = {
        "payment_first": 0.3,
        "missing_partner": 0.1,
        "mismatch": 0.1,
        "cancel": 0.1,
        "refund": 0.1,
        "late": 0.05,
        "duplicates": 0.04,
        "malformed": 0.03,
    }
    messages, end = simulate(60000, start_ms=START_MS, **options)
    report = report_of(messages, end)
    sent = report["sent"]
    assert 0.04 < report["by_kind"]["late"] / sent < 0.06
    assert 0.03 < report["by_kind"]["duplicates"] / sent < 0.05
    assert 0.02 < report["by_kind"]["malformed"] / sent < 0.04
    plans, opened = report["orders_by_plan"], report["orders"]
    assert 0.08 < report["missing_partners"] / opened < 0.12
    assert 0.08 < (plans["cancel_unpaid"] + plans["cancel_paid"]) / opened < 0.12
    for plan in ("refund", "mismatch"):
        assert 0.08 < plans[plan] / opened < 0.12, plan
    paired = opened - plans["cancel_unpaid"] - report["missing_partners"]
    assert 0.27 < report["payment_first"] / paired < 0.33
    none = first(5000, payment_first=0, missing_partner=0, mismatch=0, cancel=0, refund=0)
    assert {m.plan for m in none if m.plan} == {"paid"}


def test_payment_first_actually_sends_the_payment_before_its_order():
    messages = first(10000, payment_first=0.5, late=0.0)
    earlier = 0
    for pairs in records_by_order(messages).values():
        types = [r["event_type"] for _, r in pairs]
        if types[0] == PAYMENT_RECEIVED and ORDER_CREATED in types:
            created_ms = pairs[types.index(ORDER_CREATED)][1]["event_timestamp"]
            assert created_ms > pairs[0][1]["event_timestamp"]
            earlier += 1
    assert earlier > 500
    states = final_states(messages)
    negative = [s for s in states.values() if (s["order_to_payment_ms"] or 0) < 0]
    assert len(negative) >= earlier and all(s["status"] != EXPIRED for s in negative)


def test_late_events_are_exactly_late_by_behind_the_clock():
    messages = first(10000, late=0.1, late_by_ms=300_000, step_ms=50)
    late = [m for m in messages if m.kind == "late"]
    assert 0.08 < len(late) / len(messages) < 0.12
    for index, message in enumerate(messages):
        assert message.clock_ms == START_MS + index * 50
        if message.kind == "malformed":
            continue
        stamp = json.loads(message.value)["event_timestamp"]
        if message.kind == "late":
            assert stamp == message.event_time_ms == message.clock_ms - 300_000
        elif message.kind == "events":
            assert stamp == message.event_time_ms == message.clock_ms
    on_time = [m.event_time_ms for m in messages if m.kind == "events"]
    assert on_time == sorted(on_time)  # only late events go back in time


def test_duplicates_are_byte_identical_repeats_of_a_recent_on_time_message():
    messages = first(10000, duplicates=0.1, late=0.05)
    seen: list[tuple[str, bytes, bytes]] = []
    duplicates = 0
    for message in messages:
        if message.kind == "duplicates":
            duplicates += 1
            assert (message.topic, message.key, message.value) in seen[-RECENT:]
            assert message.plan is None and not message.last
        elif message.kind == "events":
            seen.append((message.topic, message.key, message.value))
    assert 0.08 < duplicates / len(messages) < 0.12
    event_ids = Counter(json.loads(m.value)["event_id"] for m in messages)
    assert sum(n - 1 for n in event_ids.values()) == duplicates


def test_shares_that_cannot_add_up_are_refused():
    with pytest.raises(ValueError):
        OrdersSimulator(late=0.6, duplicates=0.3, malformed=0.2)
    with pytest.raises(ValueError):
        OrdersSimulator(missing_partner=0.5, cancel=0.3, refund=0.2, mismatch=0.1)
    with pytest.raises(ValueError):
        OrdersSimulator(payment_first=1.5)
    with pytest.raises(ValueError):
        OrdersSimulator(customers=0)


# ---- report and verbose lines ---------------------------------------------------------


def test_report_counts_match_the_messages():
    messages, end = simulate(8000, start_ms=START_MS, **MIXED)
    report = report_of(messages, end)
    kinds = Counter(m.kind for m in messages)
    assert report["sent"] == len(messages) == sum(report["by_kind"].values())
    assert report["by_kind"] == {k: kinds[k] for k in KINDS}
    assert report["by_topic"] == dict(Counter(m.topic for m in messages))
    assert report["malformed_by_reason"] == dict(sorted(expected_quarantine(messages).items()))
    on_time = Counter(m.event_type for m in messages if m.kind == "events")
    assert report["events_by_type"] == {t: on_time[t] for t in EVENT_TYPES}
    late = Counter(m.event_type for m in messages if m.kind == "late")
    assert report["late_by_type"] == {t: late[t] for t in EVENT_TYPES}
    keys = {m.key for m in messages if m.kind in ("events", "late")}
    assert report["orders"] == len(keys) == sum(report["orders_by_plan"].values())
    finished = {m.key for m in messages if m.last}
    assert report["orders_finished"] == len(finished)
    assert report["orders_open"] == len(keys - finished) > 0  # cut off by the count
    plans = report["orders_by_plan"]
    assert report["missing_partners"] == plans["missing_payment"] + plans["missing_order"]
    stamps = [m.event_time_ms for m in messages if m.kind != "malformed"]
    assert (report["first_event_ms"], report["last_event_ms"]) == (min(stamps), max(stamps))
    assert report["clock_end_ms"] == START_MS + 8000 * 100
    counts = expected_counts(report, report)
    assert counts["accepted"] == 2 * len(accepted_events(messages))
    assert counts["late"] == 2 * kinds["late"] and counts["duplicates"] == 2 * kinds["duplicates"]
    assert counts["quarantined"] == 2 * kinds["malformed"]
    assert sum(counts["accepted_by_type"].values()) == counts["accepted"]


def test_verbose_lines_say_late_only_for_late_events():
    for message in first(3000, **MIXED):
        line = describe(message)
        assert ("LATE" in line) == (message.kind == "late"), line
        if message.kind == "late":
            assert line.startswith("LATE ") and "(300 s behind)" in line
        if message.kind in ("events", "late", "duplicates"):
            assert f"order={message.key.decode()}" in line and f"topic={message.topic}" in line


# ---- the CLI, with a fake producer ----------------------------------------------------


class FakeProducer:
    def __init__(self):
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.flushed = self.closed = False

    def send(self, topic, key=None, value=None):
        self.sent.append((topic, key, value))

    def flush(self):
        self.flushed = True

    def close(self):
        self.closed = True


@pytest.fixture
def fake_kafka(monkeypatch):
    producer = FakeProducer()
    monkeypatch.setattr(orders, "missing_topics", lambda bootstrap, topics: [])
    monkeypatch.setattr(orders, "open_producer", lambda bootstrap: producer)
    return producer


def test_cli_sends_what_simulate_regenerates_to_both_topics(fake_kafka):
    options = {"seed": 9, "customers": 80, "concurrent": 50, "late_by_ms": 240_000, **MIXED}
    command = producer_command(
        namespace="t_orders", count=1500, start_ms=START_MS, step_ms=40, **options
    )
    assert command[:3] == [command[0], "-m", "producers.orders"]
    result = CliRunner().invoke(orders.app, [*command[3:], "--verbose"])
    assert result.exit_code == 0, result.output
    expected, end = simulate(1500, start_ms=START_MS, step_ms=40, **options)
    assert fake_kafka.sent == [(f"{m.topic}-t_orders", m.key, m.value) for m in expected]
    assert fake_kafka.flushed and fake_kafka.closed
    lines = result.stdout.strip().splitlines()
    report = json.loads(lines[-1])
    topics = {ORDERS_TOPIC: "orders-t_orders", PAYMENTS_TOPIC: "payments-t_orders"}
    timing = {k: report[k] for k in ("seconds", "events_per_s")}
    assert report == {
        **report_of(expected, end),
        "topics": topics,
        "seed": 9,
        "tick_ms": 40,
        **timing,
    }
    assert len(lines) - 1 == 1500
    late_lines = [line for line in lines[:-1] if "LATE" in line]
    assert len(late_lines) == report["by_kind"]["late"] > 0
    assert all("(240 s behind)" in line for line in late_lines)


def test_cli_refuses_a_missing_topic_and_impossible_shares(monkeypatch, fake_kafka):
    result = CliRunner().invoke(orders.app, ["--count=5", "--late=0.7", "--malformed=0.5"])
    assert result.exit_code == 2 and "Cannot simulate" in result.output
    monkeypatch.setattr(orders, "missing_topics", lambda bootstrap, topics: topics[1:])
    result = CliRunner().invoke(orders.app, ["--count=5", f"--start={START_MS}"])
    assert result.exit_code == 2 and "payments does not exist" in result.output
    assert fake_kafka.sent == []


# ---- the oracle -----------------------------------------------------------------------


def event(order_id, event_type, amount, at_ms, kind="events", event_id=None):
    record = {
        "schema_version": 1,
        "event_id": event_id or f"{order_id}-{event_type}-{at_ms}-{amount}",
        "order_id": order_id,
        "customer_id": "c000001",
        "event_type": event_type,
        "amount": amount,
        "event_timestamp": at_ms,
    }
    value = json.dumps(record, separators=(",", ":")).encode()
    return Message(
        kind, TOPIC_OF[event_type], order_id.encode(), value, None, at_ms, at_ms, event_type
    )


T = START_MS
CRAFTED = [
    # paid: payment a minute after the order, amounts equal in cents
    event("paid", ORDER_CREATED, 10.10, T),
    event("paid", PAYMENT_RECEIVED, 10.1, T + MINUTE),
    # amount_mismatch, payment first
    event("mismatch", PAYMENT_RECEIVED, 20.00, T),
    event("mismatch", ORDER_CREATED, 20.01, T + 5_000),
    # refunded: paid, cancelled and refunded (refund outranks cancel)
    event("refunded", ORDER_CREATED, 30.0, T),
    event("refunded", PAYMENT_RECEIVED, 30.0, T + 1_000),
    event("refunded", ORDER_CANCELLED, 30.0, T + 2_000),
    event("refunded", PAYMENT_REFUNDED, 30.0, T + 3_000),
    # cancelled: never paid
    event("cancelled", ORDER_CREATED, 40.0, T),
    event("cancelled", ORDER_CANCELLED, 40.0, T + 10_000),
    # awaiting_payment -> expired
    event("no_payment", ORDER_CREATED, 50.0, T),
    # awaiting_order -> expired; a refund without a payment refunds nothing
    event("no_order", PAYMENT_RECEIVED, 60.0, T),
    event("refund_only", PAYMENT_REFUNDED, 65.0, T),
    # a refund listed before its payment in event time still refunds it
    event("refund_first", ORDER_CREATED, 66.0, T),
    event("refund_first", PAYMENT_REFUNDED, 66.0, T + 1_000),
    event("refund_first", PAYMENT_RECEIVED, 66.0, T + 2_000),
    # the payment comes after the deadline (first + 30 min): ignored -> expired
    event("too_late", ORDER_CREATED, 70.0, T),
    event("too_late", PAYMENT_RECEIVED, 70.0, T + TIMEOUT_MS + 1),
    # at the deadline still counts
    event("at_deadline", ORDER_CREATED, 80.0, T),
    event("at_deadline", PAYMENT_RECEIVED, 80.0, T + TIMEOUT_MS),
    # the earliest payment counts; ties by the smaller amount
    event("earliest", ORDER_CREATED, 90.0, T + 2_000),
    event("earliest", PAYMENT_RECEIVED, 95.0, T + 1_000),
    event("earliest", PAYMENT_RECEIVED, 90.0, T + 1_000),
    event("earliest", PAYMENT_RECEIVED, 85.0, T + 3_000),
    # late and malformed-kind messages do not count
    event("dropped", ORDER_CREATED, 11.0, T),
    event("dropped", PAYMENT_RECEIVED, 12.0, T + 1_000, kind="late"),
    event("dropped", ORDER_CANCELLED, 11.0, T + 2_000, kind="malformed"),
]


def test_the_oracle_gives_every_final_status_and_the_amounts_and_times():
    states = final_states(CRAFTED)
    assert {k: s["status"] for k, s in states.items()} == {
        "paid": PAID,
        "mismatch": AMOUNT_MISMATCH,
        "refunded": REFUNDED,
        "cancelled": CANCELLED,
        "no_payment": EXPIRED,
        "no_order": EXPIRED,
        "refund_only": EXPIRED,
        "refund_first": REFUNDED,
        "too_late": EXPIRED,
        "at_deadline": PAID,
        "earliest": PAID,
        "dropped": EXPIRED,
    }
    assert states["paid"] == {
        "status": PAID,
        "order_amount": 10.10,
        "paid_amount": 10.1,
        "order_time_ms": T,
        "payment_time_ms": T + MINUTE,
        "order_to_payment_ms": MINUTE,
    }
    assert states["mismatch"]["order_to_payment_ms"] == -5_000
    assert states["no_order"]["order_amount"] is None
    assert states["no_order"]["order_to_payment_ms"] is None
    assert states["too_late"]["paid_amount"] is None
    assert states["earliest"]["paid_amount"] == 90.0
    assert states["earliest"]["payment_time_ms"] == T + 1_000
    assert states["dropped"]["paid_amount"] is None
    assert not {AWAITING_PAYMENT, AWAITING_ORDER} & set(status_counts(states))


def test_the_oracle_leaves_orders_awaiting_until_the_watermark_passes_their_deadline():
    deadline = T + TIMEOUT_MS
    waiting = final_states(CRAFTED, watermark_ms=deadline)  # not strictly past
    assert waiting["no_payment"]["status"] == AWAITING_PAYMENT
    assert waiting["no_order"]["status"] == AWAITING_ORDER
    assert waiting["refund_only"]["status"] == AWAITING_ORDER
    assert waiting["paid"]["status"] == PAID
    assert set(status_counts(waiting)) == set(STATUSES) - {EXPIRED}
    passed = final_states(CRAFTED, watermark_ms=deadline + 1)
    assert passed == final_states(CRAFTED)
    assert set(status_counts(passed)) == set(STATUSES) - {AWAITING_PAYMENT, AWAITING_ORDER}
    shorter = final_states(CRAFTED, timeout_ms=30_000)
    assert shorter["cancelled"]["status"] == CANCELLED  # 10 s in
    assert shorter["paid"]["status"] == EXPIRED  # the payment a minute in is past it


def test_duplicates_and_arrival_order_do_not_change_the_oracle():
    messages = first(20000, **MIXED)
    expected = final_states(messages)
    assert set(status_counts(expected)) == {
        PAID,
        AMOUNT_MISMATCH,
        REFUNDED,
        CANCELLED,
        EXPIRED,
    }
    shuffled = list(messages)
    random.Random(3).shuffle(shuffled)
    assert final_states(shuffled) == expected
    valid = [m for m in messages if m.kind == "events"]
    # duplicates re-sent as if on time: same event ids, so nothing changes
    again = [*shuffled, *(replace(m, kind="events") for m in valid[::7])]
    assert final_states(again) == expected
    without = [m for m in messages if m.kind != "duplicates"]
    assert final_states(without) == expected
    crafted = [*CRAFTED, *(replace(m, kind="duplicates") for m in CRAFTED)]
    assert final_states(crafted) == final_states(list(reversed(CRAFTED)))


def test_simulated_orders_end_as_planned_when_all_their_events_count():
    messages = first(20000, late=0.0, duplicates=0.05, malformed=0.05)
    states = final_states(messages)
    plans = {m.key.decode(): m.plan for m in messages if m.plan}
    finished = {m.key.decode() for m in messages if m.last}
    assert finished and set(states) == set(plans)
    for order_id in finished:
        assert states[order_id]["status"] == PLAN_STATUS[plans[order_id]], order_id
    seen = Counter(PLAN_STATUS[plans[o]] for o in finished)
    assert set(seen) == {PAID, AMOUNT_MISMATCH, REFUNDED, CANCELLED, EXPIRED}


def test_late_events_are_left_out_of_the_oracle():
    messages = first(10000, late=0.2)
    states = final_states(messages)
    late_only = {m.key for m in messages if m.kind == "late"} - {
        m.key for m in messages if m.kind == "events"
    }
    assert late_only and not {k.decode() for k in late_only} & set(states)
    assert accepted_events(messages) == [
        json.loads(m.value) for m in messages if m.kind == "events"
    ]
