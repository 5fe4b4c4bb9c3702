"""The latency bench's arithmetic (control/latency.py); the measurement itself needs the
running platform and is `lakehouse bench latency`."""

import pandas as pd
import pytest

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


def run(rate: float, reads: float, seconds: int = 60, batch_s: float = 5.0):
    """Send times and bronze latencies of a run sent at `rate`/s to a stream that reads
    `reads`/s in batches `batch_s` apart (so latencies saw-tooth by up to a batch)."""
    sent = pd.Series([i / rate for i in range(int(rate * seconds))])
    queued = sent * (rate / reads - 1) if reads < rate else 0.0
    return sent + 1000.0, 3.0 + (-sent % batch_s) + queued


def test_bronze_that_falls_behind_says_what_it_kept_up_with():
    # Sent at 10,000/s, read at 5,000/s: the latency grows by a second every second.
    behind = sustained_rate(10_000, *run(10_000, 5_000))
    assert behind["rate_held"] is False
    assert behind["max_sustained_rate"] == pytest.approx(5_000, rel=0.01)
    # Read as fast as sent: the saw-tooth of the batches is not growth.
    held = sustained_rate(10_000, *run(10_000, 12_000))
    assert held["rate_held"] and held["max_sustained_rate"] == 10_000
    # A long last batch does not pass for falling behind.
    sent, latency = run(10_000, 12_000)
    latency.iloc[-50_000:] += 8.0
    assert sustained_rate(10_000, sent, latency)["rate_held"]
    # One instant: too short a run to tell.
    assert sustained_rate(10_000, pd.Series([5.0, 5.0]), pd.Series([1.0, 2.0])) == {
        "max_sustained_rate": None
    }
