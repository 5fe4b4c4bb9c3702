"""The short chaos run (`make chaos` runs the long one): on the real platform, while the
market producer sends duplicates, late and malformed records, the driver is SIGKILLed twice,
the Kafka broker restarted and the Postgres sync killed inside its transaction. The
supervisor's cycle alone brings the driver back, and every sink then holds exactly what the
producer sent."""

from __future__ import annotations

import pytest

from control import chaos

pytestmark = [pytest.mark.services, pytest.mark.spark, pytest.mark.slow]

SHORT = chaos.Plan(
    kills=2,
    restarts=("kafka",),
    kill_sync=True,
    kill_during_optimize=False,
    rate=100.0,
    seed=5,
    gap_s=(1.0, 4.0),
    supervisor_cycle_s=3.0,
)


def test_every_sink_reconciles_after_kills_a_broker_restart_and_a_killed_sync(platform):
    report = chaos.run(platform, SHORT)
    sinks = report["sinks"]
    problems = {name: s for name, s in sinks.items() if s["lost"] or s["duplicated"]}
    assert not problems, problems
    assert sorted(f["fault"] for f in report["faults"]) == [
        "kill-driver",
        "kill-driver",
        "kill-sync",
        "restart-kafka",
    ]
    assert all(f["recovered_s"] is not None for f in report["faults"]), report["faults"]
    # Every path of the pipeline carried records, so "nothing lost" says something.
    for name in (
        "delta.bronze_trades",
        "delta.quarantine_market",
        "delta.trades_enriched",
        "delta.quarantine_trades_enrichment",
        "postgres.trades_enriched",
        "postgres.trades_live_1m",
    ):
        assert sinks[name]["expected"] > 0, name
    assert report["late_trades"]["copies_sent"] > 0
    assert report["late_trades"]["dropped_by_watermark"] >= 0
    assert report["passed"]
