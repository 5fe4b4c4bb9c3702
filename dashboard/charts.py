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
