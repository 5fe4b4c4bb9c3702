"""The web activity pipeline's chaos audit, without Spark or services: lakes built by hand
from the producer's regenerated stream, perfect or with one fault, reconciled."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest

from lakehouse.settings import Settings
from producers.activity import simulate
from producers.activity_audit import (
    AUDIT,
    EVENT_COLUMNS,
    PRIMER,
    SENTINEL,
    SENTINEL_AHEAD_MS,
    SESSION_COLUMNS,
    EventOracle,
)

SEED = 5
MESSAGES = 3000
START_MS = 1_767_225_600_000  # any clock: the ids and kinds do not depend on it
PRODUCED = {"sent": MESSAGES, "seed": SEED}


@pytest.fixture(scope="module")
def messages():
    sent, _ = simulate(MESSAGES, start_ms=START_MS, step_ms=100, **AUDIT.simulator(SEED))
    return sent


def rows(messages, kind: str) -> pd.DataFrame:
    records = [json.loads(m.value) for m in messages if m.kind == kind]
    frame = pd.DataFrame(records).rename(columns={"event_timestamp": "event_time_ms"})
    return frame[[*EVENT_COLUMNS, "event_time_ms"]]


def bronze(messages) -> pd.DataFrame:
    """The primer, each on-time event once and the sentinel, as bronze holds them."""
    events = rows(messages, "events")
    primer = {**PRIMER, "event_time_ms": int(events["event_time_ms"].min()) - 1000}
    sentinel = {**SENTINEL, "event_time_ms": int(events["event_time_ms"].max()) + SENTINEL_AHEAD_MS}
    return pd.concat([pd.DataFrame([primer]), events, pd.DataFrame([sentinel])], ignore_index=True)


def lake(messages, events: pd.DataFrame) -> dict:
    """What read_back gives when every sink agrees with `events` (bronze)."""
    oracle = EventOracle(events)
    views = oracle.page_views().rename(columns={"window_start": "window_start_ms"})
    users = oracle.active_users().rename(columns={"window_start": "window_start_ms"})
    return {
        "events": events,
        "quarantine": pd.DataFrame({"reason": [m.reason for m in messages if m.reason]}),
        "kafka.user_activity": len(messages) + 2,  # and the primer and the sentinel
        "enriched_ids": list(events["event_id"]),
        "page_view_counts": views.assign(window_end_ms=views["window_start_ms"] + 60_000),
        "active_users": users.assign(window_end_ms=users["window_start_ms"] + 300_000),
        "user_sessions": oracle.sessions(),
    }


def faults(report: dict) -> dict:
    """The sinks that lost or duplicated something: name -> (lost, duplicated)."""
    return {
        name: (line["lost"], line["duplicated"])
        for name, line in report["sinks"].items()
        if line["lost"] or line["duplicated"]
    }


def test_the_command_is_live_with_every_kind_and_late_by_an_hour():
    command = AUDIT.producer_command(Settings(), SimpleNamespace(namespace="chaos1"), 200.0, SEED)
    assert command[1:4] == ["-m", "producers.activity", "--rate=200.0"]
    assert "--namespace=chaos1" in command and "--late-by-s=3600" in command
    assert f"--seed={SEED}" in command and not any(a.startswith("--start") for a in command)
    for kind in ("duplicate", "late", "malformed"):
        assert f"--{kind}-fraction=0.02" in command


def test_a_perfect_lake_reconciles_every_sink(messages):
    report = AUDIT.reconcile(PRODUCED, lake(messages, bronze(messages)))
    assert set(report["sinks"]) == {
        "kafka.user_activity",
        "kafka.enriched_activity",
        "delta.activity_events",
        "delta.quarantine_activity",
        "postgres.page_view_counts",
        "postgres.active_users",
        "postgres.user_sessions",
    }
    assert faults(report) == {}
    assert all(line["expected"] > 0 for line in report["sinks"].values())
    late = sum(m.kind == "late" for m in messages)
    assert late > 0
    assert report["late"] == {"sent": late, "dropped": late}
    assert report["duplicates_dropped"] == report["duplicates_sent"] > 0
    # Every session closes (the primer's too) but the sentinel's own (ahead of the final
    # watermark).
    sessions = bronze(messages).groupby(["user_id", "session_id"]).ngroups
    assert report["sinks"]["postgres.user_sessions"]["expected"] == sessions - 1


def test_a_missing_bronze_row_is_lost_there(messages):
    found = lake(messages, bronze(messages))
    found["events"] = found["events"].iloc[1:]
    assert faults(AUDIT.reconcile(PRODUCED, found))["delta.activity_events"] == (1, 0)


def test_a_wrong_count_in_postgres_is_one_lost_and_one_duplicated(messages):
    found = lake(messages, bronze(messages))
    found["page_view_counts"].loc[0, "views"] += 1
    found["user_sessions"] = pd.concat([found["user_sessions"], found["user_sessions"].iloc[:1]])
    assert faults(AUDIT.reconcile(PRODUCED, found)) == {
        "postgres.page_view_counts": (1, 1),
        "postgres.user_sessions": (0, 1),
    }


def test_a_repeated_event_in_the_enriched_topic_is_duplicated(messages):
    found = lake(messages, bronze(messages))
    found["enriched_ids"].append(found["enriched_ids"][0])
    found["kafka.user_activity"] -= 1
    assert faults(AUDIT.reconcile(PRODUCED, found)) == {
        "kafka.enriched_activity": (0, 1),
        "kafka.user_activity": (1, 0),
    }


def test_a_late_event_in_bronze_is_duplicated_there(messages):
    late = rows(messages, "late").iloc[:1]
    events = pd.concat([bronze(messages), late], ignore_index=True)
    report = AUDIT.reconcile(PRODUCED, lake(messages, events))
    assert faults(report)["delta.activity_events"] == (0, 1)
    assert report["late"]["dropped"] == report["late"]["sent"] - 1


def test_the_primer_is_expected_in_bronze(messages):
    found = lake(messages, bronze(messages))
    found["events"] = found["events"][found["events"]["event_id"] != PRIMER["event_id"]]
    assert faults(AUDIT.reconcile(PRODUCED, found))["delta.activity_events"] == (1, 0)


def test_settled_once_bronze_the_windows_and_the_closed_sessions_are_there(messages):
    found = lake(messages, bronze(messages))
    assert AUDIT.settled(PRODUCED, found)
    for name, drop in (
        ("events", lambda f: f[f["event_id"] != SENTINEL["event_id"]]),
        ("events", lambda f: f.iloc[1:]),
        ("page_view_counts", lambda f: f[f["page"] != SENTINEL["page"]]),
        ("active_users", lambda f: f.iloc[:-1]),
        ("user_sessions", lambda f: f.iloc[1:]),
    ):
        assert not AUDIT.settled(PRODUCED, {**found, name: drop(found[name])}), name


def test_an_empty_lake_reconciles_to_everything_lost():
    empty = {
        "events": pd.DataFrame(columns=[*EVENT_COLUMNS, "event_time_ms"]),
        "quarantine": pd.DataFrame(columns=["reason"]),
        "kafka.user_activity": 0,
        "enriched_ids": [],
        "page_view_counts": pd.DataFrame(
            columns=["window_start_ms", "window_end_ms", "page", "views"]
        ),
        "active_users": pd.DataFrame(columns=["window_start_ms", "window_end_ms", "active_users"]),
        "user_sessions": pd.DataFrame(columns=SESSION_COLUMNS),
    }
    assert not AUDIT.settled(PRODUCED, empty)
    report = AUDIT.reconcile(PRODUCED, empty)
    assert report["sinks"]["delta.activity_events"]["lost"] > 0
