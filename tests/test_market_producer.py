"""The market simulator's pure side: determinism, mixes, and the reasons it intends."""

import itertools
import json
import time
from collections import Counter

import pytest

from lakehouse.pipelines.market import SYMBOL_PATTERN
from producers.market import (
    MAX_SYMBOLS,
    MarketSimulator,
    Run,
    SendReport,
    self_check,
    split,
    symbol_name,
)

START_MS = 1_767_225_600_000


def first(n, **options):
    return list(itertools.islice(MarketSimulator(**options).messages(START_MS), n))


def test_same_seed_same_messages_other_seed_others():
    assert first(3000, seed=5, malformed_fraction=0.1) == first(
        3000, seed=5, malformed_fraction=0.1
    )
    assert first(3000, seed=5) != first(3000, seed=6)


def test_symbols_are_distinct_and_valid():
    import re

    names = [symbol_name(i) for i in (0, 1, 17575, 17576, MAX_SYMBOLS - 1)]
    assert names == ["AAA", "AAB", "ZZZ", "AAAA", "ZZZZZ"]
    assert len({symbol_name(i) for i in range(20000)}) == 20000
    assert all(re.match(SYMBOL_PATTERN, n) for n in names)


def test_every_symbol_gets_its_reference_first():
    messages = first(50, symbols=20)
    assert [m.kind for m in messages[:20]] == ["references"] * 20


def test_mix_follows_the_fractions_and_every_malformed_record_breaks_its_rule():
    messages = first(
        20000, symbols=50, late_fraction=0.05, duplicate_fraction=0.05, malformed_fraction=0.05
    )
    kinds = Counter(m.kind for m in messages)
    for kind in ("late", "duplicates", "malformed"):
        assert 0.04 < kinds[kind] / len(messages) < 0.06, kinds
    malformed = [m for m in messages if m.kind == "malformed"]
    assert len({m.reason for m in malformed}) == 6
    assert all(self_check(m) == m.reason for m in malformed)
    assert all(self_check(m) is None for m in messages if m.kind != "malformed")
    trade_ids = Counter(
        json.loads(m.value)["trade_id"]
        for m in messages
        if m.kind != "malformed" and m.topic == "trades"
    )
    duplicated = sum(count - 1 for count in trade_ids.values())
    assert duplicated == kinds["duplicates"]  # a duplicate is an exact re-send


def test_late_trades_are_behind_by_the_requested_amount():
    messages = first(5000, late_fraction=0.2, late_by_ms=60_000)
    late = [json.loads(m.value)["event_timestamp"] for m in messages if m.kind == "late"]
    assert late and max(late) < START_MS + 5000 - 60_000 + 1


def test_report_totals():
    report = SendReport()
    for message in first(1000, malformed_fraction=0.1):
        report.add(message)
    sent = report.as_dict(2.0)["sent"]
    assert sent["total"] == 1000
    assert sum(sent[k] for k in ("trades", "references", "duplicates", "late", "malformed")) == 1000
    assert sum(sent["malformed_by_reason"].values()) == sent["malformed"]


def trade_ids(messages) -> list[str]:
    return [json.loads(m.value)["trade_id"] for m in messages if m.kind == "trades"]


def test_workers_of_a_seed_are_deterministic_and_never_share_a_trade_id():
    alone = trade_ids(first(2000, seed=9))
    assert alone[0] == "9-1"  # one process: the ids earlier runs and tests know
    workers = [trade_ids(first(2000, seed=9, worker=k)) for k in range(3)]
    assert workers[1] == trade_ids(first(2000, seed=9, worker=1))
    assert workers[0][0] == "9-0-1"
    ids = [i for part in [alone, *workers] for i in part]
    assert len(ids) == len(set(ids))
    assert first(200, seed=9, worker=0) != first(200, seed=9, worker=1)


def test_a_run_split_over_processes_keeps_its_count_and_rate():
    run = Run(
        simulator={"seed": 4},
        topics={"trades": "t", "references": "r"},
        rate=20_000.0,
        count=10,
        duration=0.0,
        start_ms=0,
        step_ms=1,
    )
    assert split(run, 1) == [run]
    parts = split(run, 3)
    assert [p.count for p in parts] == [4, 3, 3]
    assert sum(p.rate for p in parts) == run.rate
    assert [p.simulator for p in parts] == [{"seed": 4, "worker": k} for k in range(3)]
    with pytest.raises(ValueError, match="less than one message per process"):
        split(run, 11)


def test_a_run_without_a_seed_takes_a_new_one_from_the_clock():
    """Demo feeds restarted later must not resend their last run's trade ids."""
    from producers.seeds import run_seed

    before = int(time.time())
    assert before <= run_seed(None) <= int(time.time())
    assert run_seed(7) == 7
