"""The orders page.

Pure: the figures and numbers on small frames; the page (Streamlit's AppTest) with the
query functions replaced, with data and without; the queries' SQL on a recording
connection. With the platform: the queries on a real `order_status` in an isolated schema,
read through the dashboard's read-only role.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta

import pandas as pd
import psycopg
import pytest
import streamlit as st
from psycopg import sql
from streamlit.testing.v1 import AppTest

from dashboard import charts, queries
from lakehouse.settings import PROJECT_ROOT, Settings
from tests.test_activity_dashboard import Recorder, values

APP = str(PROJECT_ROOT / "dashboard" / "app.py")
PAGE = "orders_page.py"  # relative to app.py, as registered in its navigation
AS_OF = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def statuses_frame() -> pd.DataFrame:
    counts = {
        "paid": 80,
        "amount_mismatch": 5,
        "expired": 4,
        "cancelled": 3,
        "refunded": 6,
        "awaiting_payment": 1,
        "awaiting_order": 1,
    }
    return pd.DataFrame({"status": list(counts), "orders": list(counts.values())})


def ages_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "status": ["awaiting_order", "awaiting_payment", "awaiting_payment"],
            "age_bucket": [4, 0, 2],
            "orders": [2, 3, 1],
        }
    )


def latencies_frame() -> pd.DataFrame:
    return pd.DataFrame({"latency_s": [-30, 10, 45, 200], "orders": [2, 5, 2, 1]})


# ---- figures and numbers ----------------------------------------------------------------


def test_the_match_rate_is_paid_over_every_order():
    summary = charts.order_summary(statuses_frame())
    assert summary["orders"] == 100
    assert summary["match_rate"] == pytest.approx(0.8)
    assert (summary["amount_mismatch"], summary["expired"]) == (5, 4)
    assert (summary["cancelled"], summary["refunded"]) == (3, 6)


def test_a_status_without_orders_counts_zero_and_no_orders_has_no_rate():
    summary = charts.order_summary(pd.DataFrame({"status": ["expired"], "orders": [2]}))
    assert summary["match_rate"] == 0 and summary["paid"] == 0 and summary["refunded"] == 0
    empty = charts.order_summary(pd.DataFrame(columns=["status", "orders"]))
    assert empty["orders"] == 0 and empty["match_rate"] is None


def test_quantiles_count_each_latency_as_often_as_its_orders():
    found = charts.weighted_quantiles(latencies_frame(), "latency_s", "orders", [0.5, 0.95])
    assert found == [10.0, 200.0]
    assert charts.weighted_quantiles(latencies_frame(), "latency_s", "orders", [0.2]) == [-30.0]
    assert charts.weighted_quantiles(latencies_frame(), "latency_s", "orders", [0.21]) == [10.0]
    one = pd.DataFrame({"latency_s": [7], "orders": [1]})
    assert charts.weighted_quantiles(one, "latency_s", "orders", [0.5, 0.95]) == [7.0, 7.0]
    empty = pd.DataFrame(columns=["latency_s", "orders"])
    assert charts.weighted_quantiles(empty, "latency_s", "orders", [0.5]) is None


def test_open_order_ages_fill_every_bucket_for_both_statuses():
    table = charts.open_order_ages(ages_frame(), queries.AGE_LABELS)
    assert list(table.index) == ["awaiting_payment", "awaiting_order"]
    assert list(table.columns) == list(queries.AGE_LABELS)
    assert table.loc["awaiting_payment"].tolist() == [3, 0, 1, 0, 0]
    assert table.loc["awaiting_order"].tolist() == [0, 0, 0, 0, 2]
    assert len(queries.AGE_LABELS) == len(queries.AGE_EDGES_S) + 1


def test_open_orders_by_age_is_stacked_by_status():
    figure = charts.open_orders_by_age(ages_frame(), queries.AGE_LABELS)
    by_status = {trace.name: trace for trace in figure.data}
    assert set(by_status) == {"awaiting_payment", "awaiting_order"}
    assert list(by_status["awaiting_order"].x) == list(queries.AGE_LABELS)
    assert list(by_status["awaiting_payment"].y) == [3, 0, 1, 0, 0]
    assert figure.layout.barmode == "stack"


def test_payment_latency_is_a_weighted_histogram_with_its_quantiles():
    figure = charts.payment_latency(latencies_frame(), {"p50": 10.0, "p95": 200.0})
    (histogram,) = figure.data
    assert histogram.type == "histogram" and histogram.histfunc == "sum"
    assert list(histogram.x) == [-30, 10, 45, 200] and list(histogram.y) == [2, 5, 2, 1]
    assert [shape.x0 for shape in figure.layout.shapes] == [10.0, 200.0]
    assert [note.text for note in figure.layout.annotations] == ["p50 10 s", "p95 200 s"]


# ---- the page, with the query functions replaced ------------------------------------------


@pytest.fixture
def page_env(tmp_path, monkeypatch):
    """A home of its own, and no cached reads from another test (AppTest runs the page in
    this process, so st.cache_data is shared)."""
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path))
    st.cache_data.clear()
    yield
    st.cache_data.clear()


def open_page() -> AppTest:
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception
    return app.switch_page(PAGE).run()


def figures(app: AppTest) -> dict[str, dict]:
    """The page's plotly figures by title."""
    found = {}
    for chart in app.get("plotly_chart"):
        figure = json.loads(chart.proto.spec)
        found[figure["layout"]["title"]["text"]] = figure
    return found


def fake_queries(monkeypatch, as_of=AS_OF, **frames: pd.DataFrame) -> list[tuple]:
    """Replace the serving connection and the orders queries; returns their calls."""
    calls: list[tuple] = []
    monkeypatch.setattr(queries, "serving", lambda settings: nullcontext(object()))
    # The default page (trends) lists the live feed's symbols from the same connection.
    monkeypatch.setattr(queries, "live_symbols", lambda conn, schema: [])
    monkeypatch.setattr(queries, "orders_as_of", lambda conn, schema: as_of)

    def query(name: str, frame: pd.DataFrame):
        def read(conn, schema, when):
            calls.append((name, schema, when))
            return frame

        return read

    defaults = {
        "order_status_counts": statuses_frame(),
        "open_order_ages": ages_frame(),
        "payment_latencies": latencies_frame(),
    }
    for name, frame in {**defaults, **frames}.items():
        monkeypatch.setattr(queries, name, query(name, frame))
    return calls


def test_the_page_draws_rates_ages_and_latencies(page_env, monkeypatch):
    calls = fake_queries(monkeypatch)
    app = open_page()
    assert not app.exception
    assert app.title[0].value == "Orders"
    assert not app.info
    caption = app.caption[0].value
    assert "Data as of 2026-12-01 12:00 UTC" in caption and "not the clock" in caption

    metrics = {m.label: m.value for m in app.metric}
    assert metrics == {
        "Match rate": "80.0%",
        "Open orders": "6",
        "Amount mismatches": "5",
        "Expired": "4",
        "Cancelled": "3",
        "Refunded": "6",
        "Payment time p50": "10 s",
        "Payment time p95": "200 s",
    }
    drawn = figures(app)
    ages = {t["name"]: values(t["y"]) for t in drawn["Open orders by age"]["data"]}
    assert ages == {"awaiting_payment": [3, 0, 1, 0, 0], "awaiting_order": [0, 0, 0, 0, 2]}
    latency = drawn["Order to payment (paid orders)"]
    assert values(latency["data"][0]["y"]) == [2, 5, 2, 1]
    assert [shape["x0"] for shape in latency["layout"]["shapes"]] == [10, 200]
    # The counts and latencies over the 24 hours up to the latest change; the ages at it.
    since = AS_OF - timedelta(hours=24)
    assert sorted(calls) == [
        ("open_order_ages", "serving", AS_OF),
        ("order_status_counts", "serving", since),
        ("payment_latencies", "serving", since),
    ]


def test_the_time_range_moves_the_counts_not_the_ages(page_env, monkeypatch):
    calls = fake_queries(monkeypatch)
    app = open_page()
    calls.clear()
    app.sidebar.select_slider(key="orders_hours").set_value(1).run()
    assert not app.exception
    assert {(name, when) for name, _, when in calls} == {
        ("open_order_ages", AS_OF),
        ("order_status_counts", AS_OF - timedelta(hours=1)),
        ("payment_latencies", AS_OF - timedelta(hours=1)),
    }


def test_an_empty_table_shows_what_to_run(page_env, monkeypatch):
    fake_queries(monkeypatch, as_of=None)
    app = open_page()
    assert not app.exception
    assert [info.value for info in app.info] == [queries.ORDERS_EMPTY]
    assert "lakehouse stream start orders_pipeline" in queries.ORDERS_EMPTY
    assert not app.get("plotly_chart")


def test_no_open_and_no_paid_orders_still_draw_the_counts(page_env, monkeypatch):
    fake_queries(
        monkeypatch,
        open_order_ages=pd.DataFrame(columns=["status", "age_bucket", "orders"]),
        payment_latencies=pd.DataFrame(columns=["latency_s", "orders"]),
        order_status_counts=pd.DataFrame({"status": ["expired"], "orders": [3]}),
    )
    app = open_page()
    assert not app.exception
    assert [info.value for info in app.info] == [
        "No order is waiting for its partner.",
        "No paid order in this range.",
    ]
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Match rate"] == "0.0%" and metrics["Open orders"] == "0"
    assert metrics["Expired"] == "3" and metrics["Payment time p95"] == "-"
    assert not app.get("plotly_chart")


class MissingTable:
    """A connection on which `order_status` does not exist."""

    def execute(self, statement, params=None):
        raise psycopg.errors.UndefinedTable('relation "serving.order_status" does not exist')

    def rollback(self):
        pass


def test_a_missing_table_shows_what_to_run(page_env, monkeypatch):
    monkeypatch.setattr(queries, "serving", lambda settings: nullcontext(MissingTable()))
    app = open_page()
    assert not app.exception
    assert [info.value for info in app.info] == [queries.ORDERS_TABLES_MISSING]
    assert not app.get("plotly_chart")


# ---- the queries' SQL, on a recording connection --------------------------------------------


def test_the_queries_read_the_schema_they_are_given():
    conn = Recorder()
    since = AS_OF - timedelta(hours=1)
    queries.order_status_counts(conn, "serving_ab12", since)
    queries.open_order_ages(conn, "serving_ab12", AS_OF)
    queries.payment_latencies(conn, "serving_ab12", since)
    for text, _ in conn.statements:
        assert '"serving_ab12".order_status ' in text
    (_, counts), (_, ages), (_, latencies) = conn.statements
    assert counts == [since] and latencies == [since]
    assert ages == [AS_OF, list(queries.AGE_EDGES_S), list(queries.OPEN_STATUSES)]


# ---- with Postgres: the queries on a real order_status, through the read-only role -------


@pytest.fixture
def orders_schema(platform: Settings) -> Iterator[str]:
    """An isolated serving schema with the orders pipeline's table; dropped after."""
    from lakehouse.migrations import upgrade_serving
    from lakehouse.pipelines.orders import PIPELINE

    name = f"serving_dash{uuid.uuid4().hex[:10]}"
    upgrade_serving(platform, name, [PIPELINE.migrations])
    yield name
    with psycopg.connect(platform.postgres_dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def order_row(order_id: str, status: str, first_min: float, **fields) -> dict:
    """An order first seen `first_min` minutes before AS_OF (30-minute deadline)."""
    first = AS_OF + timedelta(minutes=first_min)
    row = {
        "order_id": order_id,
        "status": status,
        "version": 1,
        "order_amount": None,
        "paid_amount": None,
        "order_time": None,
        "payment_time": None,
        "order_to_payment_s": None,
        "changed_at": first,
        "deadline": first + timedelta(minutes=30),
    }
    return {**row, **fields}


@pytest.mark.services
def test_orders_queries_read_the_serving_table_with_postgres(platform, orders_schema):
    t = AS_OF
    rows = [
        order_row(
            "paid-1",
            "paid",
            -10,
            order_time=t - timedelta(minutes=10),
            payment_time=t - timedelta(minutes=9, seconds=30),
            order_to_payment_s=30.4,
            changed_at=t - timedelta(minutes=9, seconds=30),
        ),
        order_row(
            "paid-2",
            "paid",
            -5,
            order_time=t - timedelta(minutes=4),
            payment_time=t - timedelta(minutes=5),
            order_to_payment_s=-60.0,  # the payment first
            changed_at=t - timedelta(minutes=4),
        ),
        order_row("wait-pay", "awaiting_payment", -0.5, order_time=t - timedelta(seconds=30)),
        order_row("wait-order", "awaiting_order", -20, payment_time=t - timedelta(minutes=20)),
        order_row("gone", "expired", -200, order_time=t - timedelta(minutes=200)),
        order_row("latest", "cancelled", -1, changed_at=t),
        order_row("old", "paid", -600, order_to_payment_s=5.0),  # outside a 3 h range
    ]
    columns = list(rows[0])
    with psycopg.connect(platform.postgres_dsn(), autocommit=True) as conn:
        conn.cursor().executemany(
            sql.SQL("INSERT INTO {}.order_status ({}) VALUES ({})").format(
                sql.Identifier(orders_schema),
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(", ").join(sql.Placeholder() * len(columns)),
            ),
            [[row[c] for c in columns] for row in rows],
        )

    since = t - timedelta(hours=3)
    with queries.serving(platform) as conn:  # the dashboard's read-only role
        assert queries.orders_as_of(conn, orders_schema) == t
        statuses = queries.order_status_counts(conn, orders_schema, since)
        ages = queries.open_order_ages(conn, orders_schema, t)
        latencies = queries.payment_latencies(conn, orders_schema, since)
        with pytest.raises(
            (psycopg.errors.ReadOnlySqlTransaction, psycopg.errors.InsufficientPrivilege)
        ):
            conn.execute(
                sql.SQL("DELETE FROM {}.order_status").format(sql.Identifier(orders_schema))
            )

    assert dict(zip(statuses["status"], statuses["orders"], strict=True)) == {
        "awaiting_order": 1,
        "awaiting_payment": 1,
        "cancelled": 1,
        "paid": 2,
    }
    assert list(ages.itertuples(index=False, name=None)) == [
        ("awaiting_order", 3, 1),  # 20 minutes: 15-30 min
        ("awaiting_payment", 0, 1),  # 30 seconds: under 1 min
    ]
    assert list(latencies.itertuples(index=False, name=None)) == [(-60, 1), (30, 1)]
    assert charts.order_summary(statuses)["match_rate"] == pytest.approx(0.4)
    # Each figure takes what its query returns.
    charts.open_orders_by_age(ages, queries.AGE_LABELS)
    charts.payment_latency(latencies, {"p50": 30.0})


@pytest.mark.services
def test_an_empty_orders_table_reads_as_no_data_with_postgres(platform, orders_schema):
    with queries.serving(platform) as conn:
        assert queries.orders_as_of(conn, orders_schema) is None
    with queries.serving(platform) as conn, pytest.raises(queries.NoData) as missing:
        queries.orders_as_of(conn, "serving_no_such_schema")
    assert str(missing.value) == queries.ORDERS_TABLES_MISSING
