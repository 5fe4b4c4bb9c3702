"""Streamlit dashboard: per-ticker trends from the lake's marts, sectors, movers, web activity,
orders, pipeline health.

Queries live in dashboard/queries.py and figures in dashboard/charts.py; this file only lays
them out; the web activity and orders pages are files of their own
(dashboard/activity_page.py, dashboard/orders_page.py). Reads are cached for REFRESH_S
seconds, and the chart refreshes itself at that pace.
"""

from __future__ import annotations

import contextlib

import streamlit as st

from dashboard import charts, queries
from infra.health import check_services
from lakehouse.layout import Layout
from lakehouse.settings import load_settings

REFRESH_S = 30
# The per-ticker chart follows the live bars the stream updates every few seconds.
LIVE_REFRESH_S = 10

st.set_page_config(page_title="Streaming lakehouse", layout="wide")
settings = load_settings()


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def load_symbols() -> list[str]:
    """Symbols in the marts and on the live feed (a new one shows before dbt builds it)."""
    names: set[str] = set()
    marts_missing = None
    try:
        with queries.marts(settings) as con:
            names.update(queries.symbols(con))
    except queries.NoData as missing:
        marts_missing = missing
    with contextlib.suppress(queries.NoData), queries.serving(settings) as conn:
        names.update(queries.live_symbols(conn, Layout(settings).serving_schema))
    if not names and marts_missing is not None:
        raise marts_missing  # its message says what to run
    return sorted(names)


@st.cache_data(ttl=LIVE_REFRESH_S / 2, show_spinner=False)
def load_bars(symbol: str, width: str, hours: int):
    schema = Layout(settings).serving_schema
    return queries.ticker_bars(settings, schema, symbol, width, hours)


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def load_overview():
    with queries.marts(settings) as con:
        return queries.sectors(con), queries.top_movers(con)


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def load_quarantine():
    with queries.marts(settings) as con:
        return queries.quarantine_counts(con)


def trends_page() -> None:
    st.title("Per-ticker trends")
    try:
        names = load_symbols()
    except queries.NoData as empty:
        st.info(str(empty))
        return
    if not names:
        st.info("The lake has no trades yet: start the demo feed and the market pipeline.")
        return
    symbol = st.sidebar.selectbox("Ticker", names, key="ticker")
    width = st.sidebar.radio("Bar", list(queries.BAR_TABLES), key="width")
    hours = st.sidebar.select_slider(
        "Time range (hours, 0 = all)", options=[0, 1, 6, 24, 168], value=0, key="hours"
    )
    live_chart(symbol, width, hours)


@st.fragment(run_every=LIVE_REFRESH_S)
def live_chart(symbol: str, width: str, hours: int) -> None:
    """Re-runs on its own every LIVE_REFRESH_S seconds: the page follows the stream."""
    try:
        bars, marts_as_of, live_as_of = load_bars(symbol, width, hours)
    except queries.NoData as empty:
        st.info(str(empty))
        return
    st.caption(data_as_of_caption(marts_as_of, live_as_of))
    if bars.empty:
        st.info(f"No {width} bars for {symbol} in this range.")
        return
    last = bars.iloc[-1]
    left, middle, right = st.columns(3)
    left.metric("Close", f"{last['close']:.2f}", f"{(last['return'] or 0) * 100:.2f} %")
    middle.metric("VWAP", f"{last['vwap']:.2f}")
    right.metric("Trades in bar", int(last["trade_count"]))
    st.plotly_chart(charts.candlestick(bars, symbol), width="stretch", key="candles")


def data_as_of_caption(marts_as_of, live_as_of) -> str:
    parts = []
    if live_as_of is not None:
        parts.append(
            f"Data as of {live_as_of:%Y-%m-%d %H:%M:%S} UTC (newest trade on the live feed)"
        )
    if marts_as_of is not None:
        parts.append(f"marts up to the {marts_as_of:%H:%M} bar (moving averages end there)")
    return "; ".join(parts) or "No data yet."


def overview_page() -> None:
    st.title("Sectors and top movers")
    try:
        sectors, movers = load_overview()
    except queries.NoData as empty:
        st.info(str(empty))
        return
    if sectors.empty:
        st.info("No sector data yet.")
    else:
        st.plotly_chart(charts.sector_volume(sectors), width="stretch", key="sectors")
    st.subheader("Top movers (latest day)")
    st.dataframe(movers, width="stretch", hide_index=True)


def health_page() -> None:
    st.title("Pipeline health")
    services = check_services(settings)
    st.dataframe(
        [{"service": name, "healthy": "yes" if ok else "no"} for name, ok in services.items()],
        hide_index=True,
    )
    st.subheader("Streams (last micro-batch of each query)")
    st.caption(
        "kafka_records_behind: records waiting in Kafka after the last batch;"
        " event_time_lag: how far the watermark trails the clock;"
        " late_rows_dropped and duplicates_dropped: events dropped behind the watermark and"
        " repeated event ids, summed over every batch;"
        " kafka_offsets_lost: offsets retention deleted before the query read them (counted"
        " only when the platform skips them; by default the query stops instead)."
    )
    streams = queries.stream_health(settings) if services.get("postgres") else None
    if streams is None or streams.empty:
        st.info("No streaming query has recorded a batch yet.")
    else:
        lost = streams["kafka_offsets_lost"].fillna(0)
        for name, count in zip(streams["query_name"], lost, strict=True):
            if count > 0:
                st.error(f"{name} skipped {int(count):,} Kafka offsets retention deleted first.")
        st.dataframe(streams, width="stretch", hide_index=True)
    st.subheader("Quarantined records by reason")
    try:
        st.dataframe(load_quarantine(), hide_index=True)
    except queries.NoData as empty:
        st.info(str(empty))
    st.subheader("CSV drops: files, rows loaded, rows refused by reason")
    try:
        with queries.serving(settings) as conn:
            schema = Layout(settings).serving_schema
            st.dataframe(queries.csv_file_totals(conn, schema), hide_index=True)
            st.dataframe(queries.csv_refusals(conn, schema), hide_index=True)
    except queries.NoData as empty:
        st.info(str(empty))


page = st.navigation(
    [
        st.Page(trends_page, title="Trends", default=True),
        st.Page(overview_page, title="Sectors and movers"),
        st.Page("activity_page.py", title="Web activity", url_path="activity"),
        st.Page("orders_page.py", title="Orders", url_path="orders"),
        st.Page("csv_page.py", title="CSV drops", url_path="csv"),
        st.Page(health_page, title="Pipeline health"),
    ]
)
page.run()
