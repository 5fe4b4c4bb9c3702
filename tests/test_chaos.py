"""The chaos run's plan and the market audit's reconciliation, without services: what the
producer sent is regenerated from its seed, and each sink's lost and duplicated rows are the
two differences between the multiset it should hold and the one it holds."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from itertools import islice
from pathlib import Path

import pandas as pd
import pytest

from control.chaos import Plan, audited, passed, schedule
from lakehouse.audit import reconcile
from lakehouse.pipelines import REGISTRY
from producers.market import MarketSimulator, SendReport
from producers.market_audit import (
    SENTINEL,
    MarketAudit,
    bar_counts,
    reconcile_market,
    regenerate,
    with_trade_ids,
)

PLAN = Plan(seed=3)
SIMULATOR = MarketAudit(
    duplicate_fraction=0.05, late_fraction=0.05, malformed_fraction=0.05
).simulator(PLAN.seed)


def test_the_schedule_holds_every_fault_once_and_each_kill_and_is_seeded():
    faults = schedule(PLAN, random.Random(1))
    assert Counter(faults) == {
        "kill-driver": 20,
        "restart-kafka": 1,
        "restart-s3": 1,
        "restart-postgres": 1,
        "kill-sync": 1,
        "kill-during-optimize": 1,
    }
    assert faults == schedule(PLAN, random.Random(1))
    assert faults != schedule(PLAN, random.Random(2))
    short = Plan(kills=2, restarts=("kafka",), kill_sync=False, kill_during_optimize=False)
    assert sorted(schedule(short, random.Random(1))) == 2 * ["kill-driver"] + ["restart-kafka"]


def test_an_unknown_service_to_restart_is_refused():
    with pytest.raises(ValueError, match="cannot restart mongo"):
        Plan(restarts=("kafka", "mongo"))


def test_every_registered_pipeline_declares_an_audit_and_a_named_one_must():
    assert [p.name for p in audited(REGISTRY)] == REGISTRY.names
    assert [p.name for p in audited(REGISTRY, ("orders",))] == ["orders"]
    with pytest.raises(ValueError, match="no pipeline 'nope'"):
        audited(REGISTRY, ("nope",))


def test_regenerated_stream_agrees_with_the_producers_own_report():
    report = SendReport()
    for message in islice(MarketSimulator(**SIMULATOR).messages(0, None, 1), 5000):
        report.add(message)
    sent = regenerate(SIMULATOR, 5000)
    counts = report.counts
    assert min(counts["duplicates"], counts["late"], counts["malformed"]) > 0
    assert len(sent.on_time) == counts["trades"]
    assert len(sent.late) == counts["late"]
    # Every repeated copy is a duplicate, of an on-time or of a late trade.
    assert (
        sum(sent.repeats.values()) + sum(sent.late.values()) - len(sent.late)
        == counts["duplicates"]
    )
    assert sum(sent.references.values()) == counts["references"]
    assert sent.malformed == report.malformed_by_reason
    assert sent.trade_messages == 5000 - counts["references"]


def test_reconcile_counts_what_is_missing_and_what_is_extra():
    expected = Counter({"a": 1, "b": 2, "c": 1})
    assert reconcile(expected, Counter({"a": 1, "b": 2, "c": 1})) == {
        "produced": 4,
        "expected": 4,
        "found": 4,
        "lost": 0,
        "duplicated": 0,
    }
    line = reconcile(expected, Counter({"a": 2, "b": 1, "d": 1}), produced=9)
    assert line == {"produced": 9, "expected": 4, "found": 4, "lost": 2, "duplicated": 2}


def lake_of(sent, *, late_accepted=(), late_quarantined=()) -> dict:
    """The tables a faultless run leaves behind for `sent`."""
    first = {t: i for i, t in enumerate(sent.on_time)}
    silver_ids = [*sent.on_time, *late_accepted]
    silver = pd.DataFrame(
        {
            "trade_id": silver_ids,
            "symbol": ["AAA"] * len(silver_ids),
            "event_time": [
                pd.Timestamp("2026-01-01") + pd.Timedelta(seconds=first.get(t, 0))
                for t in silver_ids
            ],
        }
    )
    minutes = silver.assign(minute=silver["event_time"].dt.floor("min"))
    bars = minutes.groupby(["symbol", "minute"]).size().rename("trade_count").reset_index()
    rejected = [(t, "duplicate_trade_id") for t, n in sent.repeats.items() for _ in range(n)]
    rejected += [(t, "late_trade") for t in late_quarantined]
    return {
        "bronze_trades": pd.DataFrame({"trade_id": list((sent.on_time + sent.late).elements())}),
        "bronze_company_reference": pd.DataFrame(
            {"symbol": [*sent.references.elements(), SENTINEL]}
        ),
        "quarantine_market": pd.DataFrame({"reason": list(sent.malformed.elements())}),
        "trades_enriched": silver,
        "quarantine_trades_enrichment": with_trade_ids(
            pd.DataFrame(
                {
                    "reason": [reason for _, reason in rejected],
                    "raw_value": [json.dumps({"trade_id": t}) for t, _ in rejected],
                }
            )
        ),
        "serving.trades_enriched": silver[["trade_id"]],
        "serving.trades_ohlcv_1m": bars,
        "serving.trades_live_1m": bars,
        "live_hours": 6,
        "kafka.trades": sent.trade_messages,
        "kafka.references": sum(sent.references.values()) + 1,
    }


def verdict(result: dict, faults: list[dict]) -> bool:
    sinks = result.pop("sinks")
    return passed({"sinks": sinks, "pipelines": {"market": result}, "faults": faults})


def test_a_faultless_lake_reconciles_with_nothing_lost_or_doubled():
    sent = regenerate(SIMULATOR, 3000)
    late = list(sent.late)
    lake = lake_of(sent, late_accepted=late[:2], late_quarantined=late[2:3])
    result = reconcile_market(sent, lake)
    assert all(s["lost"] == 0 and s["duplicated"] == 0 for s in result["sinks"].values())
    assert result["sinks"]["delta.trades_enriched"]["expected"] == len(sent.on_time) + 2
    assert result["late_trades"]["accepted"] == 2
    assert result["late_trades"]["quarantined"] == 1
    copies = sum(sent.late.values())
    assert result["late_trades"]["dropped_by_watermark"] == copies - 3
    assert verdict(dict(result), [{"fault": "kill-driver", "recovered_s": 40.0}])
    assert not verdict(dict(result), [{"fault": "kill-driver", "recovered_s": None}])


def test_a_lost_trade_and_a_doubled_batch_show_in_their_sinks():
    sent = regenerate(SIMULATOR, 3000)
    lake = lake_of(sent)
    missing = lake["trades_enriched"]["trade_id"].iloc[0]
    lake["trades_enriched"] = lake["trades_enriched"].iloc[1:]
    lake["bronze_trades"] = pd.concat([lake["bronze_trades"], lake["bronze_trades"].iloc[:5]])
    doubled = lake["serving.trades_live_1m"].assign(trade_count=lambda b: b["trade_count"] * 2)
    lake["serving.trades_live_1m"] = doubled
    sinks = reconcile_market(sent, lake)["sinks"]
    assert sinks["delta.trades_enriched"]["lost"] == 1
    assert sinks["delta.bronze_trades"]["duplicated"] == 5
    # Silver lost the trade, so the serving copy of it is one nobody expects.
    assert sinks["postgres.trades_enriched"]["duplicated"] == 1
    # Every bar counted twice: all beyond what silver's trades (one fewer now) make.
    live = sinks["postgres.trades_live_1m"]
    assert live["duplicated"] == doubled["trade_count"].sum() - len(lake["trades_enriched"])
    assert live["lost"] == 0
    assert missing not in set(lake["trades_enriched"]["trade_id"])
    assert not verdict(reconcile_market(sent, lake), [])


def test_bars_are_keyed_by_utc_minute_whatever_the_timestamp_type():
    naive = pd.DataFrame(
        {"symbol": ["A"], "minute": [pd.Timestamp("2026-01-01 10:00")], "trade_count": [3]}
    )
    zoned = naive.assign(minute=naive["minute"].dt.tz_localize("UTC").dt.tz_convert("Asia/Tokyo"))
    assert bar_counts(naive) == bar_counts(zoned) == Counter({("A", "2026-01-01T10:00"): 3})
    assert json.dumps(list(bar_counts(naive)))  # plain keys: the report is JSON


def test_the_cli_refuses_an_unknown_service_in_one_sentence():
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lakehouse"), "chaos", "--restart", "mongo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    output = (result.stdout + result.stderr).strip()
    assert output.splitlines() == ["error: cannot restart mongo: choose among kafka, s3, postgres."]


def test_a_repeated_copy_is_refused_at_most_once_as_a_duplicate_or_late():
    sent = regenerate(SIMULATOR, 3000)
    lake = lake_of(sent)
    rejected = lake["quarantine_trades_enrichment"]
    assert len(rejected) == sum(sent.repeats.values()) > 2
    # One copy refused as late (its original had left), one dropped by Spark's watermark.
    relabelled = rejected.iloc[1:].copy()
    relabelled.iloc[0, relabelled.columns.get_loc("reason")] = "late_trade"
    lake["quarantine_trades_enrichment"] = relabelled
    result = reconcile_market(sent, lake)
    line = result["sinks"]["delta.quarantine_trades_enrichment"]
    assert (line["lost"], line["duplicated"]) == (0, 0)
    assert result["late_trades"]["repeated_copies"]["dropped_by_watermark"] == 1
    # A copy refused twice is one too many.
    lake["quarantine_trades_enrichment"] = pd.concat([rejected, rejected.iloc[:1]])
    line = reconcile_market(sent, lake)["sinks"]["delta.quarantine_trades_enrichment"]
    assert (line["lost"], line["duplicated"]) == (0, 1)


def test_an_unknown_supervisor_is_refused_and_airflow_needs_a_platform_of_its_own():
    from control.chaos import ChaosError, ChaosRun
    from lakehouse.settings import Settings

    with pytest.raises(ValueError, match="no supervisor 'cron': choose cycle or airflow"):
        Plan(supervisor="cron")
    # The DAG supervises the platform's own namespace: never on the `make up` platform.
    with pytest.raises(ChaosError, match="--own-platform"):
        ChaosRun(Settings(), Plan(supervisor="airflow"))
