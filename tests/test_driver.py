"""The driver's parameters: a pipeline's declared defaults, overridden by --param."""

import pytest

from lakehouse.kit import Pipeline
from spark.driver import parse_params

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
