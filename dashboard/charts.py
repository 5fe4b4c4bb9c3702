"""Plotly figures of the dashboard; pure functions of DataFrames."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots


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
    figure.update_layout(
        title="Page views per minute",
        xaxis_title="minute (UTC)",
        yaxis_title="page views",
        height=350,
        margin={"t": 40, "b": 20},
    )
    return figure


def top_pages(pages: pd.DataFrame) -> go.Figure:
    """The most viewed pages (page, views), the most viewed on top."""
    ranked = pages.sort_values(["views", "page"], ascending=[True, False])
    figure = go.Figure(go.Bar(x=ranked["views"], y=ranked["page"], orientation="h"))
    figure.update_layout(
        title="Top pages", xaxis_title="page views", height=350, margin={"t": 40, "b": 20}
    )
    return figure


def active_users(windows: pd.DataFrame) -> go.Figure:
    """Distinct users per 5-minute window sliding by a minute, plotted at each window's end
    (window_end, active_users): the users active in the five minutes up to that time."""
    figure = go.Figure(
        go.Scatter(
            x=windows["window_end"], y=windows["active_users"], mode="lines", name="active users"
        )
    )
    figure.update_layout(
        title="Active users (5-minute window, sliding by 1 minute)",
        xaxis_title="window end (UTC)",
        yaxis_title="distinct users",
        height=350,
        margin={"t": 40, "b": 20},
    )
    return figure


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
    figure.update_layout(
        title="Session length by how the session ended",
        xaxis_title="session length (s)",
        yaxis_title="sessions",
        barmode="overlay",
        height=350,
        margin={"t": 40, "b": 20},
    )
    figure.update_traces(opacity=0.65)
    return figure
