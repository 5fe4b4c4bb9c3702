"""The driver's parameters: a pipeline's declared defaults, overridden by --param; each
pipeline's micro-batch interval."""

import pytest

from lakehouse.kit import Pipeline
from lakehouse.registry import load_registry
from lakehouse.settings import Settings
from spark.driver import RunOptions, parse_params

MARKET = Pipeline("market", "job", "m:Q", params=(("watermark", "10 seconds"),))
OTHER = Pipeline("other", "job", "o:Q")


def test_declared_defaults_apply_and_a_param_overrides_its_own_pipeline_only():
    params = parse_params(["market.buckets=4", "other.watermark=1 minute"], (MARKET, OTHER))
    assert params == {
        "market": {"watermark": "10 seconds", "buckets": "4"},
        "other": {"watermark": "1 minute"},
    }
    assert parse_params(["market.watermark=5 seconds"], (MARKET,))["market"] == {
        "watermark": "5 seconds"
    }


@pytest.mark.parametrize("bad", ["buckets=4", "market.buckets", "nope.buckets=4"])
def test_a_param_that_names_no_pipeline_of_the_job_is_refused(bad):
    with pytest.raises(ValueError, match=r"is not pipeline\.name=value"):
        parse_params([bad], (MARKET,))


def test_a_pipeline_triggers_at_its_declared_interval_else_at_the_platforms():
    slow = Pipeline("slow", "job", "s:Q", trigger_s=60.0)
    platform = Settings(stream_trigger_s=15.0, stream_trigger_override_s=None)
    running = RunOptions(once=False, interval=None, master="", max_offsets=0)
    assert running.trigger(MARKET, platform) == {"processingTime": "15.0 seconds"}
    assert running.trigger(slow, platform) == {"processingTime": "60.0 seconds"}
    # The test platforms' override, then --interval, win over every declaration.
    fast = Settings(stream_trigger_s=15.0, stream_trigger_override_s=5.0)
    assert running.trigger(slow, fast) == {"processingTime": "5.0 seconds"}
    by_hand = RunOptions(once=False, interval=0.0, master="", max_offsets=0)
    assert by_hand.trigger(slow, fast) == {"processingTime": "0.0 seconds"}
    drain = RunOptions(once=True, interval=None, master="", max_offsets=0)
    assert drain.trigger(slow, platform) == {"availableNow": True}


def test_only_the_market_pipeline_keeps_the_platforms_interval():
    # The chart's freshness rides on the market pipeline; the others' outputs wait for a
    # 2-minute watermark or a file drop anyway.
    platform = Settings(stream_trigger_s=15.0, stream_trigger_override_s=None)
    registry = load_registry(platform)
    assert {p.name: p.trigger_interval(platform) for p in registry.pipelines} == {
        "market": 15.0,
        "activity": 60.0,
        "orders": 60.0,
        "csv": 60.0,
    }
