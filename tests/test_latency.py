"""The latency bench's arithmetic (control/latency.py); the measurement itself needs the
running platform and is `lakehouse bench latency`."""

import pandas as pd

from control.latency import latencies, spread, sustained_rate


def test_every_row_counts_from_its_event_time_to_its_commit():
    rows = pd.DataFrame(
        {
            "event_time": pd.to_datetime([1_000, 2_000, 2_500], unit="ms", utc=True),
            "_commit_timestamp": pd.to_datetime([1_500, 4_000, 4_000], unit="ms"),
        }
    )
    assert latencies(rows).tolist() == [0.5, 2.0, 1.5]


def test_spread_is_nearest_rank_and_says_when_nothing_was_seen():
    values = pd.Series([float(n) for n in range(1, 101)])
    assert spread(values, "pg_") == {
        "pg_seen": 100,
        "pg_p50_s": 50.0,
        "pg_p95_s": 95.0,
        "pg_p99_s": 99.0,
        "pg_max_s": 100.0,
    }
    assert spread(pd.Series([None], dtype=float)) == {"seen": 0}


def test_a_lag_that_grows_says_what_bronze_kept_up_with():
    steady = sustained_rate(20_000, [(0.0, 40_000), (30.0, 60_000), (60.0, 45_000)])
    assert steady["rate_held"] and steady["max_sustained_rate"] == 20_000
    # 600k records behind after a minute: bronze read 10k/s of the 20k/s sent.
    falling_behind = sustained_rate(20_000, [(0.0, 0), (60.0, 600_000)])
    assert not falling_behind["rate_held"]
    assert falling_behind["max_sustained_rate"] == 10_000
    assert sustained_rate(20_000, [(0.0, 5)])["max_sustained_rate"] is None
