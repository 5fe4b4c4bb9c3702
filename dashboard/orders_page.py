"""The orders pipeline's page: how many orders get paid, which still wait for their partner
and for how long, what went wrong (amount mismatches, expiries, cancellations, refunds) and
how long a payment takes, from the pipeline's Postgres serving table `order_status` in the
platform's serving schema.

A page file of its own, registered in app.py's navigation. "Now" is the latest state change
in the table, not the clock: the time range ends there and open orders' ages are measured
from there, so a stopped pipeline still shows its last hours and a replayed or simulated
clock (producers/orders.py --start) reads right.
"""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from dashboard import charts, queries
from lakehouse.layout import Layout
from lakehouse.settings import load_settings

REFRESH_S = 30
HOURS = [1, 3, 6, 24, 168]
QUANTILES = {"p50": 0.5, "p95": 0.95}

settings = load_settings()


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def load_orders(schema: str, hours: int) -> dict | None:
    """The page's frames for the `hours` up to the latest change; None when the table is
    empty. NoData (not cached) when Postgres or the table is missing."""
    with queries.serving(settings) as conn:
        as_of = queries.orders_as_of(conn, schema)
        if as_of is None:
            return None
        since = as_of - timedelta(hours=hours)
        return {
            "as_of": as_of,
            "statuses": queries.order_status_counts(conn, schema, since),
            "ages": queries.open_order_ages(conn, schema, as_of),
            "latencies": queries.payment_latencies(conn, schema, since),
        }


@st.fragment(run_every=REFRESH_S)
def live_orders(schema: str, hours: int) -> None:
    """Re-runs on its own every REFRESH_S seconds: the page follows the stream."""
    try:
        data = load_orders(schema, hours)
    except queries.NoData as empty:
        st.info(str(empty))
        return
    if data is None:
        st.info(queries.ORDERS_EMPTY)
        return
    summary = charts.order_summary(data["statuses"])
    ages, latencies = data["ages"], data["latencies"]
    found = charts.weighted_quantiles(latencies, "latency_s", "orders", list(QUANTILES.values()))
    quantiles = {} if found is None else dict(zip(QUANTILES, found, strict=True))
    st.caption(
        f"Data as of {data['as_of']:%Y-%m-%d %H:%M} UTC (the latest order state change);"
        f" orders last changed in the {hours} h up to it. Open orders' ages are measured from"
        " that time too, not the clock, so a replayed or simulated clock reads right."
    )
    columns = iter(st.columns(8))
    rate = summary["match_rate"]
    next(columns).metric(
        "Match rate",
        "-" if rate is None else f"{rate:.1%}",
        help="paid orders / all orders, whatever their status",
    )
    next(columns).metric("Open orders", f"{int(ages['orders'].sum()):,}", help="now")
    for label, status in (
        ("Amount mismatches", "amount_mismatch"),
        ("Expired", "expired"),
        ("Cancelled", "cancelled"),
        ("Refunded", "refunded"),
    ):
        next(columns).metric(label, f"{summary[status]:,}")
    for name in QUANTILES:
        value = quantiles.get(name)
        next(columns).metric(
            f"Payment time {name}",
            "-" if value is None else f"{value:,.0f} s",
            help="order to payment of paid orders, to the second",
        )

    left, right = st.columns(2)
    if ages.empty:
        left.info("No order is waiting for its partner.")
    else:
        left.plotly_chart(
            charts.open_orders_by_age(ages, queries.AGE_LABELS), width="stretch", key="ages"
        )
    if not quantiles:
        right.info("No paid order in this range.")
    else:
        right.plotly_chart(
            charts.payment_latency(latencies, quantiles), width="stretch", key="latency"
        )


st.title("Orders")
range_hours = st.sidebar.select_slider(
    "Time range (hours)", options=HOURS, value=24, key="orders_hours"
)
live_orders(Layout(settings).serving_schema, range_hours)
