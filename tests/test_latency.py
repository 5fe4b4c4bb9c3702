"""The latency bench's arithmetic (control/latency.py); the measurement itself needs the
running platform and is `lakehouse bench latency`."""

import pandas as pd

from control.latency import latencies, spread, sustained_rate


def test_every_row_counts_from_its_event_time_to_its_commit():
    # As delta-rs hands them out: event time in us with a zone, commit time in naive ms.
    event_time = pd.to_datetime([1_000, 2_000, 2_500], unit="ms", utc=True).as_unit("us")
    committed = pd.to_datetime([1_500, 4_000, 4_000], unit="ms").as_unit("ms")
    rows = pd.DataFrame({"event_time": event_time, "_commit_timestamp": committed})
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


def test_bronze_that_falls_behind_says_what_it_kept_up_with():
    # 600k trades sent over 60 s, committed from 1010 s to 1130 s: bronze sustained 5,000/s.
    behind = sustained_rate(10_000, 600_000, pd.Series([1010.0, 1070.0, 1130.0]))
    assert behind == {"bronze_read_per_s": 5000.0, "rate_held": False, "max_sustained_rate": 5000.0}
    # Committed over about as long as they were sent, however late the first commit.
    held = sustained_rate(10_000, 600_000, pd.Series([1040.0, 1070.0, 1101.0]))
    assert held["rate_held"] and held["max_sustained_rate"] == 10_000
    # All in one commit: the run was too short to tell.
    assert sustained_rate(10_000, 5_000, pd.Series([1040.0, 1040.0])) == {
        "max_sustained_rate": None
    }
