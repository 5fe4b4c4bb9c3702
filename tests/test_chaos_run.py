"""The short chaos run (`make chaos` runs the long one): on the real platform, while every
pipeline's producer sends duplicates, late and malformed records, a driver is SIGKILLed
twice, the Kafka broker restarted and the Postgres sync killed inside its transaction. The
supervisor's cycle alone brings the driver back, and every sink of every pipeline then holds
exactly what its producer sent."""

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
    # Every pipeline in one driver (settings.streams_in_one_driver): each kill stops all
    # four at once, and the pipelines' own tests cover a driver per pipeline.
    report = chaos.run(platform.model_copy(update={"streams_in_one_driver": True}), SHORT)
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
    # Every pipeline ran and every path carried records, so "nothing lost" says something.
    assert set(report["pipelines"]) == {"market", "activity", "orders", "csv"}
    empty = sorted(name for name, s in sinks.items() if s["expected"] == 0)
    assert not empty, empty
    late = report["pipelines"]["market"]["late_trades"]
    assert late["copies_sent"] > 0
    assert late["dropped_by_watermark"] >= 0
    assert report["passed"]
