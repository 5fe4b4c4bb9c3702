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


def commit_times(*commits: tuple[float, int]) -> pd.Series:
    """Each trade's commit time, from (commit time, trades in it) pairs."""
    return pd.Series([at for at, trades in commits for _ in range(trades)])


def test_bronze_that_falls_behind_says_what_it_kept_up_with():
    # 600k trades sent over 60 s at 10,000/s; after the first commit (100k of them, sent before
    # it), bronze committed 500k in the 100 s to its last: it sustained 5,000/s.
    behind = sustained_rate(
        10_000, 600_000, commit_times((1010.0, 100_000), (1060.0, 250_000), (1110.0, 250_000))
    )
    assert behind == {"bronze_read_per_s": 5000.0, "rate_held": False, "max_sustained_rate": 5000.0}
    # Committed over about as long as they were sent, however late the first commit.
    held = sustained_rate(
        10_000, 600_000, commit_times((1040.0, 50_000), (1070.0, 300_000), (1095.0, 250_000))
    )
    assert held["rate_held"] and held["max_sustained_rate"] == 10_000
    # A large first commit does not pass for speed: 550k in 55 s after it is 10,000/s, but
    # all 600k over those 55 s would have looked like 10,900/s.
    first_large = sustained_rate(11_000, 600_000, commit_times((1000.0, 50_000), (1055.0, 550_000)))
    assert first_large["bronze_read_per_s"] == 10_000.0 and not first_large["rate_held"]
    # All in one commit: the run was too short to tell.
    assert sustained_rate(10_000, 5_000, commit_times((1040.0, 5_000))) == {
        "max_sustained_rate": None
    }
