"""The per-ticker chart's newest bars from the live feed, history from the marts (pure).

The enrichment stream keeps one-minute bars of the last hours in Postgres (`trades_live_1m`,
updated every micro-batch); the marts are built minutes later by dbt. From the bucket that
holds the marts' newest minute on (or from the first bucket the live feed holds whole, if
later), the chart's bars are the live one-minute bars rolled up to the chosen width; before
it, the marts' bars with their moving averages. Times are UTC-aware, as the marts' are.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

FREQUENCIES = {"1 minute": "1min", "5 minutes": "5min", "1 hour": "1h"}


def utc(times):
    """Timestamps (a value or a Series) as UTC-aware: the marts' are, naive ones are UTC."""
    if isinstance(times, pd.Series):
        times = pd.to_datetime(times)
        return times.dt.tz_localize("UTC") if times.dt.tz is None else times.dt.tz_convert("UTC")
    stamp = pd.Timestamp(times)
    return stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")


def rollup(live_1m: pd.DataFrame, frequency: str) -> pd.DataFrame:
    """Live one-minute bars (bar_start, open, high, low, close, volume, notional,
    trade_count) -> bars of `frequency` in the marts' columns (no moving averages)."""
    ordered = live_1m.sort_values("bar_start")
    grouped = ordered.groupby(ordered["bar_start"].dt.floor(frequency))
    bars = grouped.agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
        notional=("notional", "sum"),
        trade_count=("trade_count", "sum"),
    )
    bars["vwap"] = bars["notional"] / bars["volume"].where(bars["volume"] != 0)
    return bars.drop(columns="notional").rename_axis("bar_start").reset_index()


def with_live(
    marts: pd.DataFrame, live_1m: pd.DataFrame, width: str, marts_as_of: datetime | None
) -> pd.DataFrame:
    """The marts' bars of `width` before the cutoff, the live feed's from it on."""
    if live_1m.empty:
        return marts
    frequency = FREQUENCIES[width]
    live_1m = live_1m.assign(bar_start=utc(live_1m["bar_start"]))
    first_whole = live_1m["bar_start"].min().ceil(frequency)
    cutoff = first_whole
    if marts_as_of is not None:
        cutoff = max(utc(marts_as_of).floor(frequency), first_whole)
    live = rollup(live_1m[live_1m["bar_start"] >= cutoff], frequency)
    if not marts.empty:
        marts = marts.assign(bar_start=utc(marts["bar_start"]))
    history = marts[marts["bar_start"] < cutoff] if not marts.empty else marts
    frames = [frame for frame in (history, live) if not frame.empty]
    if not frames:
        return marts
    return pd.concat(frames, ignore_index=True).sort_values("bar_start", ignore_index=True)
