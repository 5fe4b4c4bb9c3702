"""The web activity pipeline's page: page views per minute with the top pages, active users
(5-minute windows sliding by a minute) and session lengths, from the pipeline's Postgres
serving tables in the platform's serving schema.

A page file of its own, registered in app.py's navigation. The time range ends at the
newest data (not the clock), so a stopped pipeline still shows its last hours.
"""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from dashboard import charts, queries
from lakehouse.layout import Layout
from lakehouse.settings import load_settings

REFRESH_S = 30
HOURS = [1, 3, 6, 24, 168]

settings = load_settings()


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def load_activity(schema: str, hours: int) -> dict | None:
    """The page's frames for the `hours` up to the newest data; None when the tables are
    empty. NoData (not cached) when Postgres or the tables are missing."""
    with queries.serving(settings) as conn:
        as_of = queries.activity_as_of(conn, schema)
        if as_of is None:
            return None
        since = as_of - timedelta(hours=hours)
        return {
            "as_of": as_of,
            "per_minute": queries.page_views_per_minute(conn, schema, since),
            "pages": queries.top_pages(conn, schema, since),
            "active_users": queries.active_users(conn, schema, since),
            "sessions": queries.session_lengths(conn, schema, since),
        }


@st.fragment(run_every=REFRESH_S)
def live_activity(schema: str, hours: int) -> None:
    """Re-runs on its own every REFRESH_S seconds: the page follows the stream."""
    try:
        data = load_activity(schema, hours)
    except queries.NoData as empty:
        st.info(str(empty))
        return
    if data is None:
        st.info(queries.ACTIVITY_EMPTY)
        return
    per_minute, pages = data["per_minute"], data["pages"]
    users, sessions = data["active_users"], data["sessions"]
    st.caption(
        f"Data as of {data['as_of']:%Y-%m-%d %H:%M} UTC (the newest window or session end);"
        f" the last {hours} h up to it"
    )
    views, active, ended = st.columns(3)
    views.metric("Page views", f"{int(per_minute['views'].sum()):,}")
    active.metric(
        "Active users (latest 5 min)", int(users["active_users"].iloc[-1]) if len(users) else 0
    )
    ended.metric("Sessions ended", f"{int(sessions['sessions'].sum()):,}")

    left, right = st.columns([2, 1])
    if per_minute.empty:
        left.info("No page views in this range.")
    else:
        left.plotly_chart(
            charts.page_views_per_minute(per_minute), width="stretch", key="page_views"
        )
        right.plotly_chart(charts.top_pages(pages), width="stretch", key="top_pages")
    if users.empty:
        st.info("No active-user windows in this range.")
    else:
        st.plotly_chart(charts.active_users(users), width="stretch", key="active_users")
    if sessions.empty:
        st.info("No session has ended in this range.")
    else:
        st.plotly_chart(charts.session_lengths(sessions), width="stretch", key="session_lengths")


st.title("Web activity")
range_hours = st.sidebar.select_slider(
    "Time range (hours)", options=HOURS, value=6, key="activity_hours"
)
live_activity(Layout(settings).serving_schema, range_hours)
