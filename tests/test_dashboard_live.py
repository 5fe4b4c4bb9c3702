"""The per-ticker chart's join of marts history and live bars (pure pandas)."""

from __future__ import annotations

import pandas as pd

from dashboard.live import rollup, with_live

T0 = pd.Timestamp("2026-03-02 10:00", tz="UTC")


def live(minutes: range, price: float = 10.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "bar_start": [T0 + pd.Timedelta(minutes=m) for m in minutes],
            "open": [price + m for m in minutes],
            "high": [price + m + 0.5 for m in minutes],
            "low": [price + m - 0.5 for m in minutes],
            "close": [price + m + 0.25 for m in minutes],
            "volume": [10] * len(minutes),
            "notional": [10 * (price + m) for m in minutes],
            "trade_count": [2] * len(minutes),
        }
    )


def marts(minutes: range, width_min: int) -> pd.DataFrame:
    starts = sorted({T0 + pd.Timedelta(minutes=m - m % width_min) for m in minutes})
    return pd.DataFrame({"bar_start": starts, "open": 1.0, "close": 1.0, "ma_20": 1.0})


def test_rollup_takes_first_open_last_close_and_sums():
    bars = rollup(live(range(0, 7)), "5min")
    assert list(bars["bar_start"]) == [T0, T0 + pd.Timedelta(minutes=5)]
    first = bars.iloc[0]
    assert (first["open"], first["close"]) == (10.0, 14.25)
    assert (first["high"], first["low"]) == (14.5, 9.5)
    assert (first["volume"], first["trade_count"]) == (50, 10)
    assert first["vwap"] == sum(10 + m for m in range(5)) / 5


def test_live_bars_replace_the_marts_from_the_bucket_of_their_newest_minute():
    # Marts built up to 10:07 (its 5-minute bar 10:05 partial), live bars 10:00-10:13.
    got = with_live(marts(range(0, 8), 5), live(range(0, 14)), "5 minutes", T0.replace(minute=7))
    assert list(got["bar_start"]) == [T0 + pd.Timedelta(minutes=m) for m in (0, 5, 10)]
    assert got.iloc[0]["ma_20"] == 1.0  # from the marts
    assert pd.isna(got.iloc[1]["ma_20"]) and got.iloc[1]["trade_count"] == 10  # whole, live


def test_a_live_feed_that_starts_mid_bucket_leaves_that_bucket_to_the_marts():
    got = with_live(marts(range(0, 4), 5), live(range(3, 12)), "5 minutes", T0.replace(minute=3))
    assert got.iloc[0]["ma_20"] == 1.0 and got.iloc[0]["bar_start"] == T0
    assert list(got["bar_start"]) == [T0, T0 + pd.Timedelta(minutes=5), T0.replace(minute=10)]


def test_no_marts_yet_shows_the_live_feed_and_no_live_feed_the_marts():
    only_live = with_live(pd.DataFrame(), live(range(0, 3)), "1 minute", None)
    assert len(only_live) == 3 and only_live["trade_count"].tolist() == [2, 2, 2]
    history = marts(range(0, 3), 1)
    assert with_live(history, pd.DataFrame(), "1 minute", T0) is history


def test_naive_marts_times_are_read_as_utc():
    naive = marts(range(0, 3), 1).assign(bar_start=lambda f: f["bar_start"].dt.tz_localize(None))
    got = with_live(naive, live(range(2, 4)), "1 minute", T0.replace(minute=2).tz_localize(None))
    assert list(got["bar_start"]) == [T0 + pd.Timedelta(minutes=m) for m in range(0, 4)]
