"""The CSV drops pipeline's page: its health (files read and rejected, rows loaded, rows
refused by reason, the files still waiting in the input folder, the latest files) and what
analysts see in its views (purchases, revenue and view-to-purchase conversion per day, the
top products), from the serving schema.

A page file of its own, registered in app.py's navigation.
"""

from __future__ import annotations

import plotly.express as px
import streamlit as st
from botocore.exceptions import BotoCoreError, ClientError

from dashboard import queries
from infra.input_folders import waiting_files
from lakehouse.layout import Layout
from lakehouse.settings import load_settings

REFRESH_S = 30

settings = load_settings()


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def load_drops(schema: str) -> dict | None:
    """The page's frames; None before the first file. NoData (not cached) when Postgres or
    the tables are missing."""
    with queries.serving(settings) as conn:
        totals = queries.csv_file_totals(conn, schema).iloc[0]
        if totals["files_read"] + totals["files_rejected"] == 0:
            return None
        return {
            "totals": totals,
            "refusals": queries.csv_refusals(conn, schema),
            "files": queries.csv_recent_files(conn, schema),
            "days": queries.purchases_per_day(conn, schema),
            "products": queries.top_products(conn, schema),
        }


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def load_waiting(folder: str) -> list | None:
    """The files waiting in the input folder; None when it cannot be listed."""
    try:
        return waiting_files(folder, settings)
    except (OSError, BotoCoreError, ClientError):  # S3 down, a folder we may not read
        return None


def waiting_metric(column, folder: str) -> None:
    waiting = load_waiting(folder)
    oldest = f"; the oldest since {waiting[0].modified_at:%H:%M:%S} UTC" if waiting else ""
    column.metric(
        "Files waiting",
        "-" if waiting is None else f"{len(waiting):,}",
        help="in the input folder, not read yet"
        + oldest
        + ". A file that keeps waiting while the stream runs has a name the stream read"
        " before: drop it under a new name.",
    )


@st.fragment(run_every=REFRESH_S)
def live_drops(schema: str, folder: str) -> None:
    try:
        data = load_drops(schema)
    except queries.NoData as empty:
        st.info(str(empty))
        return
    if data is None:
        st.info(queries.CSV_EMPTY)
        return
    totals = data["totals"]
    st.caption(
        f"Input folder: {folder}. Latest file processed at"
        f" {totals['last_file_at']:%Y-%m-%d %H:%M:%S} UTC."
    )
    columns = st.columns(6)
    columns[0].metric("Files read", f"{int(totals['files_read']):,}")
    columns[1].metric(
        "Files rejected",
        f"{int(totals['files_rejected']):,}",
        help="could not be read at all; moved to the folder's _rejected/ with a .reason file",
    )
    columns[2].metric("Rows loaded", f"{int(totals['rows_loaded']):,}")
    columns[3].metric(
        "Rows already loaded",
        f"{int(totals['rows_already_loaded']):,}",
        help="valid rows whose event id was loaded before (a file dropped twice)",
    )
    columns[4].metric("Rows refused", f"{int(totals['rows_refused']):,}")
    waiting_metric(columns[5], folder)
    left, right = st.columns(2)
    left.subheader("Refused rows by reason")
    left.dataframe(data["refusals"], hide_index=True, width="stretch")
    right.subheader("Latest files")
    right.dataframe(data["files"], hide_index=True, width="stretch")

    days, products = data["days"], data["products"]
    if days.empty:
        st.info("No event loaded yet.")
        return
    st.subheader("Purchases and conversion per day (purchase_analytics)")
    left, right = st.columns(2)
    left.plotly_chart(
        px.bar(days, x="event_date", y="revenue", title="Revenue"), width="stretch", key="revenue"
    )
    right.plotly_chart(
        px.line(
            days,
            x="event_date",
            y="view_to_purchase_rate",
            markers=True,
            title="View-to-purchase rate",
        ),
        width="stretch",
        key="conversion",
    )
    st.subheader("Top products by revenue")
    st.dataframe(products, hide_index=True, width="stretch")


st.title("CSV drops")
layout = Layout(settings)
live_drops(layout.serving_schema, layout.folder(settings.csv_input_folder))
