"""The activity simulator's pure side: determinism, sessions, the mix, the reasons it
intends, the report, and the CLI against a fake producer (no Kafka)."""

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict

import pytest
import typer
from kafka.errors import KafkaError
from typer.testing import CliRunner

from lakehouse.contracts import UNPARSEABLE
from lakehouse.pipelines.activity import ACTIVITY_TOPIC, EVENT, EVENT_TYPES
from lakehouse.settings import PROJECT_ROOT
from producers import activity
from producers.activity import (
    MALFORMED_REASONS,
    RECENT,
    ActivityReport,
    ActivitySimulator,
    SimulatedClock,
    WallClock,
    describe,
    parse_start,
    self_check,
    send_all,
    simulate,
    user_name,
)
from tests.conftest import rest_of_output

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIXED = {"late_fraction": 0.05, "duplicate_fraction": 0.05, "malformed_fraction": 0.05}


def first(n, step_ms=100, **options):
    return simulate(n, start_ms=START_MS, step_ms=step_ms, **options)[0]


def valid_session_events(messages):
    """session id -> its records in sending order (late ones included, copies not)."""
    sessions = defaultdict(list)
    for message in messages:
        if message.kind in ("events", "late"):
            record = json.loads(message.value)
            sessions[record["session_id"]].append(record)
    return sessions


def report_of(messages, clock_end_ms):
    report = ActivityReport()
    for message in messages:
        report.add(message)
    return report.as_dict(
        topic=ACTIVITY_TOPIC, seed=42, clock="simulated", clock_end_ms=clock_end_ms, seconds=1.0
    )


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


# ---- generation -----------------------------------------------------------------------


def test_same_seed_same_messages_other_seed_others():
    messages, end = simulate(3000, start_ms=START_MS, seed=5, **MIXED)
    again, end_again = simulate(3000, start_ms=START_MS, seed=5, **MIXED)
    assert [(m.key, m.value) for m in messages] == [(m.key, m.value) for m in again]
    assert messages == again and end == end_again == START_MS + 3000 * 100
    assert [m.value for m in first(3000, seed=5)] != [m.value for m in first(3000, seed=6)]
    shifted, _ = simulate(3000, start_ms=START_MS + 1, seed=5, **MIXED)
    assert [m.value for m in shifted] != [m.value for m in messages]


def test_the_draws_do_not_depend_on_the_clock():
    # A live feed sends the same events as a simulated one with the same seed; only times move.
    def shape(message):
        record = json.loads(message.value)
        return message.kind, record["event_id"], record["session_id"], record["event_type"]

    simulated = first(500, step_ms=7, late_fraction=0.1)
    stream = ActivitySimulator(late_fraction=0.1).messages(WallClock())
    live = [next(stream) for _ in range(500)]
    assert [shape(m) for m in simulated] == [shape(m) for m in live]


def test_users_are_named_by_pool_size():
    assert user_name(123, 1000) == "u000123"
    assert user_name(5, 10_000_000) == "u0000005"
    messages = first(2000, users=30, concurrent=10)
    assert {m.key.decode() for m in messages} <= {user_name(i, 30) for i in range(30)}


def test_every_valid_message_meets_the_contract_and_is_keyed_by_its_user():
    messages = first(5000, **MIXED)
    valid = [m for m in messages if m.kind != "malformed"]
    assert valid
    for message in valid:
        record = json.loads(message.value)
        assert EVENT.violation(record) is None, record
        assert message.key == record["user_id"].encode()
        assert message.event_time_ms == record["event_timestamp"]
        assert message.event_type == record["event_type"]
    assert {json.loads(m.value)["event_type"] for m in valid} == set(EVENT_TYPES)
    event_ids = [json.loads(m.value)["event_id"] for m in valid if m.kind != "duplicates"]
    assert len(event_ids) == len(set(event_ids))


def test_every_malformed_record_gets_its_named_reason():
    messages = first(20000, malformed_fraction=0.1)
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
    assert not_json and mistyped  # both ways of being unparseable_or_mistyped occur


def test_sessions_start_with_session_start_and_send_nothing_after_session_end():
    messages = first(20000, users=200, concurrent=20, abandon_fraction=0.2, **MIXED)
    sessions = valid_session_events(messages)
    ended = 0
    for session_id, records in sessions.items():
        types = [r["event_type"] for r in records]
        assert types[0] == "session_start", session_id
        assert types.count("session_start") == 1
        assert len({r["user_id"] for r in records}) == 1
        assert all(
            r["page"].startswith("/products/") for r in records if r["event_type"] == "add_to_cart"
        )
        if "session_end" in types:
            assert types.count("session_end") == 1 and types[-1] == "session_end"
            assert 2 <= len(types) - 2 <= 12
            ended += 1
    finished = [m for m in messages if m.finishes]
    assert sum(m.finishes == "ended" for m in finished) == ended
    abandoned = [m for m in finished if m.finishes == "abandoned"]
    assert 0.15 < len(abandoned) / len(finished) < 0.25
    # the last event of a finished session is its last one sent; an abandoned one's is an action
    last_of = {}
    for index, message in enumerate(messages):
        if message.kind in ("events", "late"):
            last_of[json.loads(message.value)["session_id"]] = index
    for index, message in enumerate(messages):
        if message.finishes:
            record = json.loads(message.value)
            assert last_of[record["session_id"]] == index
            is_end = record["event_type"] == "session_end"
            assert is_end == (message.finishes == "ended")
            if not is_end:
                assert 2 <= len(sessions[record["session_id"]]) - 1 <= 12


def test_a_user_has_one_session_at_a_time_and_at_most_concurrent_are_open():
    messages = first(10000, users=60, concurrent=25)
    open_sessions: dict[str, str] = {}  # user -> session
    for message in messages:
        record = json.loads(message.value)
        user, session = record["user_id"], record["session_id"]
        if record["event_type"] == "session_start":
            assert user not in open_sessions
            open_sessions[user] = session
        assert open_sessions[user] == session
        assert len(open_sessions) <= 25
        if message.finishes:
            del open_sessions[user]
    capped = first(200, users=3, concurrent=50)
    assert len({m.key for m in capped}) == 3


def test_late_events_are_exactly_late_by_behind_the_clock():
    messages = first(10000, late_fraction=0.1, late_by_ms=180_000, step_ms=50)
    late = [m for m in messages if m.kind == "late"]
    assert 0.08 < len(late) / len(messages) < 0.12
    for index, message in enumerate(messages):
        assert message.clock_ms == START_MS + index * 50
        stamp = json.loads(message.value)["event_timestamp"]
        expected = message.clock_ms - 180_000 if message.kind == "late" else message.clock_ms
        assert stamp == message.event_time_ms == expected


def test_duplicates_are_exact_copies_of_a_recent_on_time_event():
    messages = first(10000, duplicate_fraction=0.1)
    seen: list[tuple[bytes, bytes]] = []
    duplicates = 0
    for message in messages:
        if message.kind == "duplicates":
            duplicates += 1
            assert (message.key, message.value) in seen[-RECENT:]
        elif message.kind == "events":
            seen.append((message.key, message.value))
    assert 0.08 < duplicates / len(messages) < 0.12
    event_ids = Counter(json.loads(m.value)["event_id"] for m in messages)
    assert sum(n - 1 for n in event_ids.values()) == duplicates


def test_fractions_that_cannot_add_up_are_refused():
    with pytest.raises(ValueError):
        ActivitySimulator(late_fraction=0.6, duplicate_fraction=0.3, malformed_fraction=0.2)
    with pytest.raises(ValueError):
        ActivitySimulator(users=0)


# ---- report, verbose lines, the clock ------------------------------------------------


def test_report_counts_match_the_messages():
    messages, end = simulate(8000, start_ms=START_MS, users=100, concurrent=30, **MIXED)
    report = report_of(messages, end)
    kinds = Counter(m.kind for m in messages)
    assert report["sent"] == len(messages) == sum(report["by_kind"].values())
    assert report["by_kind"] == {k: kinds[k] for k in ("events", "late", "duplicates", "malformed")}
    assert sum(report["malformed_by_reason"].values()) == kinds["malformed"]
    records = [json.loads(m.value) for m in messages if m.kind in ("events", "late")]
    types = Counter(r["event_type"] for r in records)
    assert report["sessions_started"] == types["session_start"]
    assert report["sessions_ended"] == types["session_end"]
    assert report["sessions_abandoned"] == sum(m.finishes == "abandoned" for m in messages)
    assert report["sessions_open"] <= 30
    stamps = [json.loads(m.value)["event_timestamp"] for m in messages if m.kind != "malformed"]
    assert (report["first_event_ms"], report["last_event_ms"]) == (min(stamps), max(stamps))
    assert report["clock_end_ms"] == START_MS + 8000 * 100


def test_verbose_lines_say_late_only_for_late_events():
    messages = first(3000, **MIXED)
    for message in messages:
        line = describe(message)
        assert ("LATE" in line) == (message.kind == "late"), line
        assert "\n" not in line
        if message.kind == "late":
            assert line.startswith("LATE ") and "(180 s behind)" in line


def test_start_is_iso_or_epoch_ms():
    assert parse_start("2026-01-01T00:00:00Z") == START_MS
    assert parse_start("2026-01-01T01:00:00+01:00") == START_MS
    assert parse_start("2026-01-01T00:00:00") == START_MS
    assert parse_start(str(START_MS)) == START_MS
    for bad in ("yesterday", "0", "1999-12-31T00:00:00Z"):
        with pytest.raises(typer.BadParameter):
            parse_start(bad)


def test_simulated_clock_ends_after_the_last_message():
    clock = SimulatedClock(START_MS, 250)
    assert [clock.tick() for _ in range(4)] == [START_MS + i * 250 for i in range(4)]
    assert clock.now == START_MS + 1000


def test_send_all_counts_exactly_what_it_sent_and_stops_on_request():
    producer, report, stop = FakeProducer(), ActivityReport(), threading.Event()
    lines = []

    def echo(line):
        lines.append(line)
        if len(lines) == 7:
            stop.set()  # as the SIGTERM/SIGINT handler does

    stream = ActivitySimulator(**MIXED).messages(SimulatedClock(START_MS))
    send_all(producer, stream, "t", report, stop=stop, echo=echo)
    assert len(producer.sent) == 7 == sum(report.counts.values()) == len(lines)
    assert producer.flushed
    stop_first = threading.Event()
    stop_first.set()
    send_all(FakeProducer(), stream, "t", ActivityReport(), stop=stop_first)


def test_live_events_carry_the_wall_clock():
    before = int(time.time() * 1000)
    producer, report = FakeProducer(), ActivityReport()
    send_all(producer, ActivitySimulator().messages(WallClock()), "t", report, count=50)
    after = int(time.time() * 1000)
    assert len(producer.sent) == 50
    for _, _, value in producer.sent:
        assert before - 180_000 <= json.loads(value)["event_timestamp"] <= after


# ---- the CLI, with a fake producer ----------------------------------------------------


@pytest.fixture
def fake_kafka(monkeypatch):
    producer = FakeProducer()
    monkeypatch.setattr(activity, "missing_topics", lambda bootstrap, topics: [])
    monkeypatch.setattr(activity, "open_producer", lambda bootstrap: producer)
    return producer


def invoke(*args):
    return CliRunner().invoke(activity.app, list(args))


def test_cli_sends_what_the_simulator_regenerates(fake_kafka):
    options = {"seed": 9, "users": 80, "concurrent": 20, "late_by_ms": 120_000, **MIXED}
    result = invoke(
        "--start=2026-01-01T00:00:00Z",
        "--count=1500",
        "--step-ms=40",
        "--seed=9",
        "--users=80",
        "--concurrent=20",
        "--late-by-s=120",
        "--late-fraction=0.05",
        "--duplicate-fraction=0.05",
        "--malformed-fraction=0.05",
        "--namespace=t_activity",
        "--verbose",
    )
    assert result.exit_code == 0, result.output
    expected, end = simulate(1500, start_ms=START_MS, step_ms=40, **options)
    assert fake_kafka.sent == [("user_activity-t_activity", m.key, m.value) for m in expected]
    assert fake_kafka.flushed and fake_kafka.closed
    lines = result.stdout.strip().splitlines()
    report = json.loads(lines[-1])
    assert report == {**report_of(expected, end), "topic": "user_activity-t_activity",
                      "seed": 9, "seconds": report["seconds"],
                      "events_per_s": report["events_per_s"]}  # fmt: skip
    assert report["clock_end_ms"] == START_MS + 1500 * 40
    late_lines = [line for line in lines[:-1] if "LATE" in line]
    assert len(lines) - 1 == 1500
    assert len(late_lines) == report["by_kind"]["late"] > 0
    assert all("(120 s behind)" in line for line in late_lines)


def test_cli_quiet_by_default_and_report_is_the_only_line(fake_kafka):
    result = invoke("--start", str(START_MS), "--count", "200")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert report["topic"] == ACTIVITY_TOPIC and report["sent"] == 200
    assert report["clock"] == "simulated"


def test_cli_says_so_when_kafka_is_unreachable(monkeypatch):
    def unreachable(bootstrap, topics):
        raise KafkaError("no broker")

    monkeypatch.setattr(activity, "missing_topics", unreachable)
    result = invoke("--count", "10")
    assert result.exit_code == 2
    assert result.output.strip().startswith("Kafka is not reachable at ")
    assert len(result.output.strip().splitlines()) == 1


def test_cli_refuses_a_missing_topic_and_a_bad_namespace(monkeypatch, fake_kafka):
    monkeypatch.setattr(activity, "missing_topics", lambda bootstrap, topics: topics)
    result = invoke("--count", "10")
    assert result.exit_code == 2 and "does not exist" in result.output
    result = invoke("--count", "10", "--namespace", "Bad-NS")
    assert result.exit_code == 2 and "not valid" in result.output
    assert fake_kafka.sent == []


# A live feed with no limit, sending to a fake producer in its own process.
FOREVER = """
import sys
from producers import activity

class Producer:
    def send(self, topic, key=None, value=None): pass
    def flush(self): pass
    def close(self): pass

activity.missing_topics = lambda bootstrap, topics: []
activity.open_producer = lambda bootstrap: Producer()
sys.argv = ["activity", "--rate", "200", "--verbose"]
activity.app()
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_feed_without_limit_stops_cleanly_on_a_signal_and_reports(sig):
    feed = subprocess.Popen(
        [sys.executable, "-c", FOREVER],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [feed.stdout.readline() for _ in range(20)]  # sending for a while
        feed.send_signal(sig)
        rest, errors = rest_of_output(feed, timeout=30)
    finally:
        if feed.poll() is None:
            feed.kill()
    assert feed.returncode == 0, errors
    lines += rest.strip().splitlines()
    report = json.loads(lines[-1])
    assert report["clock"] == "live" and report["sent"] == len(lines) - 1 >= 20
