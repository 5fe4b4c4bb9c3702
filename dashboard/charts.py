"""Plotly figures of the dashboard, and the numbers shown beside them; pure functions of
DataFrames."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

PANEL_HEIGHT = 350  # the pipeline pages' charts, two or three to a screen


def _panel(
    figure: go.Figure, title: str, xaxis_title: str, yaxis_title: str | None = None, **layout
) -> go.Figure:
    """The pipeline pages' chart layout: titled axes, one height, tight margins."""
    if yaxis_title is not None:
        layout["yaxis_title"] = yaxis_title
    figure.update_layout(
        title=title, xaxis_title=xaxis_title, height=PANEL_HEIGHT, margin={"t": 40, "b": 20}
    )
    figure.update_layout(**layout)
    return figure


def candlestick(bars: pd.DataFrame, symbol: str) -> go.Figure:
    """Candles with MA20, MA50 and VWAP over them, volume underneath."""
    figure = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.75, 0.25], vertical_spacing=0.03
    )
    figure.add_trace(
        go.Candlestick(
            x=bars["bar_start"],
            open=bars["open"],
            high=bars["high"],
            low=bars["low"],
            close=bars["close"],
            name=symbol,
        ),
        row=1,
        col=1,
    )
    for column, label in (("ma_20", "MA 20"), ("ma_50", "MA 50"), ("vwap", "VWAP")):
        figure.add_trace(
            go.Scatter(x=bars["bar_start"], y=bars[column], name=label, mode="lines"),
            row=1,
            col=1,
        )
    figure.add_trace(
        go.Bar(x=bars["bar_start"], y=bars["volume"], name="volume", showlegend=False),
        row=2,
        col=1,
    )
    figure.update_layout(
        title=symbol, xaxis_rangeslider_visible=False, height=600, margin={"t": 40, "b": 20}
    )
    return figure


def sector_volume(sectors: pd.DataFrame) -> go.Figure:
    figure = go.Figure()
    for sector, rows in sectors.groupby("sector"):
        figure.add_trace(go.Scatter(x=rows["bar_start"], y=rows["volume"], name=sector))
    figure.update_layout(title="Volume per sector, one-minute bars", height=400)
    return figure


# ---- web activity ------------------------------------------------------------------------


def page_views_per_minute(per_minute: pd.DataFrame) -> go.Figure:
    """Page views per one-minute window, all pages together (window_start, views)."""
    figure = go.Figure(
        go.Bar(x=per_minute["window_start"], y=per_minute["views"], name="page views")
    )
    return _panel(figure, "Page views per minute", "minute (UTC)", "page views")


def top_pages(pages: pd.DataFrame) -> go.Figure:
    """The most viewed pages (page, views), the most viewed on top."""
    ranked = pages.sort_values(["views", "page"], ascending=[True, False])
    figure = go.Figure(go.Bar(x=ranked["views"], y=ranked["page"], orientation="h"))
    return _panel(figure, "Top pages", "page views")


def active_users(windows: pd.DataFrame) -> go.Figure:
    """Distinct users per 5-minute window sliding by a minute, plotted at each window's end
    (window_end, active_users): the users active in the five minutes up to that time."""
    figure = go.Figure(
        go.Scatter(
            x=windows["window_end"], y=windows["active_users"], mode="lines", name="active users"
        )
    )
    return _panel(
        figure,
        "Active users (5-minute window, sliding by 1 minute)",
        "window end (UTC)",
        "distinct users",
    )


def session_lengths(sessions: pd.DataFrame) -> go.Figure:
    """Histogram of session length, one series per end_reason (end_event, timeout).

    Rows are (end_reason, duration_s, sessions): how many sessions of that length in seconds
    ended that way; plotly bins them, summing the counts.
    """
    figure = go.Figure()
    for reason, rows in sessions.groupby("end_reason", sort=True):
        figure.add_trace(
            go.Histogram(x=rows["duration_s"], y=rows["sessions"], histfunc="sum", name=str(reason))
        )
    _panel(
        figure,
        "Session length by how the session ended",
        "session length (s)",
        "sessions",
        barmode="overlay",
    )
    figure.update_traces(opacity=0.65)
    return figure


# ---- orders ------------------------------------------------------------------------------

MATCHED = "paid"
OPEN = ("awaiting_payment", "awaiting_order")
COUNTED = ("amount_mismatch", "expired", "cancelled", "refunded")


def order_summary(statuses: pd.DataFrame) -> dict:
    """The page's order figures from (status, orders) rows: `orders` in all, `match_rate`
    (paid / all orders, whatever their status, final or current; None without orders),
    and the count of each status (0 when absent)."""
    counts = statuses.groupby("status")["orders"].sum()
    total = int(counts.sum())
    summary: dict = {
        "orders": total,
        "match_rate": counts.get(MATCHED, 0) / total if total else None,
    }
    for status in (MATCHED, *OPEN, *COUNTED):
        summary[status] = int(counts.get(status, 0))
    return summary


def weighted_quantiles(
    frame: pd.DataFrame, value: str, weight: str, quantiles: Sequence[float]
) -> list[float] | None:
    """Quantiles of `value` over rows counted `weight` times (the smallest value at or above
    that share of the weight: a value of the data, no interpolation); None without rows."""
    ordered = frame[frame[weight] > 0].sort_values(value)
    if ordered.empty:
        return None
    share = ordered[weight].cumsum().to_numpy() / ordered[weight].sum()
    values = ordered[value].to_numpy()
    return [float(values[min(np.searchsorted(share, q), len(values) - 1)]) for q in quantiles]


def open_order_ages(ages: pd.DataFrame, labels: Sequence[str]) -> pd.DataFrame:
    """(status, age_bucket, orders) rows as a table: a row per open status, a column per age
    label (bucket i is labels[i]), zeros where no order is."""
    table = ages.pivot_table(
        index="status", columns="age_bucket", values="orders", aggfunc="sum", fill_value=0
    )
    table = table.reindex(index=list(OPEN), columns=range(len(labels)), fill_value=0)
    table.columns = list(labels)
    return table.astype("int64")


def open_orders_by_age(ages: pd.DataFrame, labels: Sequence[str]) -> go.Figure:
    """Orders awaiting their partner, stacked by status, per age bucket (every bucket drawn,
    empty or not, so the axis does not move between refreshes)."""
    table = open_order_ages(ages, labels)
    figure = go.Figure(
        [go.Bar(x=list(labels), y=table.loc[status].tolist(), name=status) for status in OPEN]
    )
    return _panel(
        figure,
        "Open orders by age",
        "age (from the first order or payment)",
        "orders",
        barmode="stack",
    )


def payment_latency(latencies: pd.DataFrame, quantiles: dict[str, float]) -> go.Figure:
    """Histogram of order-to-payment time of paid orders from (latency_s, orders) rows
    (plotly bins them, summing the counts), a dashed line at each quantile ({"p50": s})."""
    figure = go.Figure(
        go.Histogram(
            x=latencies["latency_s"], y=latencies["orders"], histfunc="sum", name="paid orders"
        )
    )
    for name, seconds in quantiles.items():
        figure.add_vline(x=seconds, line_dash="dash", annotation_text=f"{name} {seconds:,.0f} s")
    return _panel(
        figure,
        "Order to payment (paid orders)",
        "seconds from order to payment (negative: the payment came first)",
        "orders",
    )
