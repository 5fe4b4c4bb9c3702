"""The web activity page and the activity dbt models.

Pure: the figures on small frames; the page (Streamlit's AppTest) with the query functions
replaced, with data and without; the queries' SQL on a recording connection; the dbt
selectors, and the models built on a local Delta table. With the platform: the queries on
real serving tables in an isolated schema, read through the dashboard's read-only role.
"""

from __future__ import annotations

import base64
import json
import socket
import uuid
from collections.abc import Iterator
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
import pytest
import streamlit as st
from psycopg import sql
from streamlit.testing.v1 import AppTest

from dashboard import charts, queries
from lakehouse.settings import PROJECT_ROOT, Settings, load_settings

APP = str(PROJECT_ROOT / "dashboard" / "app.py")
PAGE = "activity_page.py"  # relative to app.py, as registered in its navigation
AS_OF = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def minutes(*offsets: int) -> list[pd.Timestamp]:
    return [pd.Timestamp(AS_OF) + pd.Timedelta(minutes=m) for m in offsets]


def per_minute_frame() -> pd.DataFrame:
    return pd.DataFrame({"window_start": minutes(-3, -2, -1), "views": [4, 7, 5]})


def pages_frame() -> pd.DataFrame:
    return pd.DataFrame({"page": ["/home", "/cart", "/search"], "views": [9, 5, 2]})


def active_users_frame() -> pd.DataFrame:
    ends = minutes(-2, -1, 0)
    return pd.DataFrame(
        {
            "window_start": [t - pd.Timedelta(minutes=5) for t in ends],
            "window_end": ends,
            "active_users": [3, 4, 2],
        }
    )


def sessions_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "end_reason": ["end_event", "end_event", "timeout", "timeout"],
            "duration_s": [30, 95, 900, 1210],
            "sessions": [2, 1, 4, 1],
        }
    )


# ---- figures ------------------------------------------------------------------------------


def test_page_views_per_minute_is_one_bar_per_minute():
    figure = charts.page_views_per_minute(per_minute_frame())
    (bars,) = figure.data
    assert bars.type == "bar"
    assert list(bars.y) == [4, 7, 5]
    assert utc(bars.x) == minutes(-3, -2, -1)


def test_top_pages_puts_the_most_viewed_page_on_top():
    (bars,) = charts.top_pages(pages_frame()).data
    assert bars.orientation == "h"
    # Plotly draws the first category at the bottom of a horizontal bar chart.
    assert list(bars.y) == ["/search", "/cart", "/home"]
    assert list(bars.x) == [2, 5, 9]


def test_active_users_is_plotted_at_each_windows_end():
    (line,) = charts.active_users(active_users_frame()).data
    assert line.type == "scatter"
    assert utc(line.x) == minutes(-2, -1, 0)
    assert list(line.y) == [3, 4, 2]


def test_session_lengths_is_one_weighted_histogram_per_end_reason():
    figure = charts.session_lengths(sessions_frame())
    by_reason = {trace.name: trace for trace in figure.data}
    assert set(by_reason) == {"end_event", "timeout"}
    for trace in figure.data:
        assert trace.type == "histogram" and trace.histfunc == "sum"
    assert list(by_reason["end_event"].x) == [30, 95]
    assert list(by_reason["end_event"].y) == [2, 1]
    assert sum(by_reason["timeout"].y) == 5
    assert figure.layout.barmode == "overlay"


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


def values(array) -> list:
    """A figure's array as a list; plotly sends numeric arrays as typed base64."""
    if isinstance(array, dict) and "bdata" in array:
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def utc(timestamps) -> list[pd.Timestamp]:
    """Plotly keeps times as naive UTC wall-clock values."""
    return list(pd.to_datetime(list(timestamps)).tz_localize("UTC"))


def figures(app: AppTest) -> dict[str, dict]:
    """The page's plotly figures by title."""
    found = {}
    for chart in app.get("plotly_chart"):
        figure = json.loads(chart.proto.spec)
        found[figure["layout"]["title"]["text"]] = figure
    return found


def fake_queries(monkeypatch, as_of=AS_OF, **frames: pd.DataFrame) -> list[tuple]:
    """Replace the serving connection and the activity queries; returns their calls."""
    calls: list[tuple] = []
    monkeypatch.setattr(queries, "serving", lambda settings: nullcontext(object()))
    # The default page (trends) lists the live feed's symbols from the same connection.
    monkeypatch.setattr(queries, "live_symbols", lambda conn, schema: [])
    monkeypatch.setattr(queries, "activity_as_of", lambda conn, schema: as_of)

    def query(name: str, frame: pd.DataFrame):
        def read(conn, schema, since, *args):
            calls.append((name, schema, since))
            return frame

        return read

    defaults = {
        "page_views_per_minute": per_minute_frame(),
        "top_pages": pages_frame(),
        "active_users": active_users_frame(),
        "session_lengths": sessions_frame(),
    }
    for name, frame in {**defaults, **frames}.items():
        monkeypatch.setattr(queries, name, query(name, frame))
    return calls


def test_the_page_draws_views_users_and_session_lengths(page_env, monkeypatch):
    calls = fake_queries(monkeypatch)
    app = open_page()
    assert not app.exception
    assert app.title[0].value == "Web activity"
    assert not app.info

    drawn = figures(app)
    views = drawn["Page views per minute"]["data"][0]
    assert values(views["y"]) == [4, 7, 5]
    assert utc(values(views["x"])) == minutes(-3, -2, -1)
    assert values(drawn["Top pages"]["data"][0]["y"]) == ["/search", "/cart", "/home"]
    users = drawn["Active users (5-minute window, sliding by 1 minute)"]["data"][0]
    assert values(users["y"]) == [3, 4, 2]
    lengths = drawn["Session length by how the session ended"]["data"]
    assert {t["name"]: values(t["y"]) for t in lengths} == {
        "end_event": [2, 1],
        "timeout": [4, 1],
    }

    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Page views"] == "16"
    assert metrics["Active users (latest 5 min)"] == "2"
    assert metrics["Sessions ended"] == "8"
    # Every read is in the platform's serving schema, for the 6 hours up to the newest data.
    assert {(schema, since) for _, schema, since in calls} == {
        ("serving", AS_OF - timedelta(hours=6))
    }


def test_the_time_range_moves_the_start_of_every_read(page_env, monkeypatch):
    calls = fake_queries(monkeypatch)
    app = open_page()
    calls.clear()
    app.sidebar.select_slider(key="activity_hours").set_value(1).run()
    assert not app.exception
    assert calls and {since for _, _, since in calls} == {AS_OF - timedelta(hours=1)}


def test_empty_tables_show_what_to_run(page_env, monkeypatch):
    fake_queries(monkeypatch, as_of=None)
    app = open_page()
    assert not app.exception
    assert [info.value for info in app.info] == [queries.ACTIVITY_EMPTY]
    assert "lakehouse stream start activity_pipeline" in queries.ACTIVITY_EMPTY
    assert not app.get("plotly_chart")


def test_a_range_without_sessions_still_draws_the_rest(page_env, monkeypatch):
    empty = pd.DataFrame(columns=["end_reason", "duration_s", "sessions"])
    fake_queries(monkeypatch, session_lengths=empty)
    app = open_page()
    assert not app.exception
    assert [info.value for info in app.info] == ["No session has ended in this range."]
    assert len(figures(app)) == 3


class MissingTables:
    """A connection on which the activity tables do not exist."""

    def execute(self, statement, params=None):
        raise psycopg.errors.UndefinedTable('relation "serving.page_view_counts" does not exist')

    def rollback(self):
        pass


def test_missing_tables_show_what_to_run(page_env, monkeypatch):
    monkeypatch.setattr(queries, "serving", lambda settings: nullcontext(MissingTables()))
    app = open_page()
    assert not app.exception
    assert [info.value for info in app.info] == [queries.ACTIVITY_TABLES_MISSING]
    assert not app.get("plotly_chart")


def test_an_unreachable_postgres_shows_what_to_run(page_env, monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("LAKEHOUSE_POSTGRES_HOST", "127.0.0.1")
    monkeypatch.setenv("LAKEHOUSE_POSTGRES_PORT", str(port))
    app = open_page()
    assert not app.exception
    assert len(app.info) == 1 and "lakehouse up" in app.info[0].value
    assert not app.get("plotly_chart")


# ---- the queries' SQL, on a recording connection --------------------------------------------


class Recorder:
    """Records the statements and answers with no rows."""

    def __init__(self):
        self.statements: list[tuple[str, list]] = []

    def execute(self, statement, params=None):
        self.statements.append((statement.as_string(None), params))
        return self

    description = ()

    def fetchall(self):
        return []


def test_the_queries_read_the_schema_they_are_given():
    conn = Recorder()
    since = AS_OF - timedelta(hours=1)
    queries.page_views_per_minute(conn, "serving_ab12", since)
    queries.top_pages(conn, "serving_ab12", since, limit=3)
    queries.active_users(conn, "serving_ab12", since)
    queries.session_lengths(conn, "serving_ab12", since)
    tables = ["page_view_counts", "page_view_counts", "active_users", "user_sessions"]
    for (text, params), table in zip(conn.statements, tables, strict=True):
        assert f'"serving_ab12".{table} ' in text
        assert params[0] == since
    assert conn.statements[1][1] == [since, 3]


# ---- dbt: the selectors, and the models on a local Delta table ----------------------------


def dbt(settings: Settings, tmp_path, *args: str, lake_root: str | None = None) -> str:
    from lakehouse.analytics import run_dbt

    paths = ["--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")]
    result = run_dbt(settings, [*args, *paths], lake_root=lake_root, capture=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result.stdout


def test_the_market_selector_leaves_the_activity_models_out(tmp_path):
    settings = load_settings().model_copy(update={"home": tmp_path})
    ls = ["ls", "--quiet", "--output", "name"]
    market = dbt(settings, tmp_path, *ls, "--select", "tag:market").split()
    activity = dbt(settings, tmp_path, *ls, "--select", "tag:activity").split()
    assert "stg_trades" in market
    assert not [name for name in market if "activity" in name]
    assert {"stg_activity_events", "fct_activity_daily", "activity_lake.activity_events"} <= set(
        activity
    )
    assert not set(market) & set(activity)


def activity_events() -> pd.DataFrame:
    """Two users' events around midnight, with a duplicate that came later than bronze's
    watermark (same event id, ingested again)."""
    start = pd.Timestamp("2026-12-01T23:58:00Z")
    rows = [
        ("e1", "u1", "s1", "session_start", "/", 0),
        ("e2", "u1", "s1", "page_view", "/home", 1),
        ("e3", "u1", "s1", "page_view", "/cart", 3),  # the next day
        ("e4", "u1", "s1", "session_end", "/cart", 4),
        ("e5", "u2", "s1", "page_view", "/home", 1),  # the same session id, another user
        ("e5", "u2", "s1", "page_view", "/home", 1),
    ]
    frame = pd.DataFrame(
        [
            {
                "event_id": event_id,
                "user_id": user,
                "session_id": session,
                "event_type": event_type,
                "page": page,
                "schema_version": 1,
                "event_time": start + pd.Timedelta(minutes=offset),
                "kafka_topic": "user_activity",
                "kafka_partition": 0,
                "kafka_offset": i,
                "kafka_timestamp": start + pd.Timedelta(minutes=offset),
                "ingested_at": start + pd.Timedelta(minutes=offset, seconds=i + 1),
            }
            for i, (event_id, user, session, event_type, page, offset) in enumerate(rows)
        ]
    )
    frame["event_date"] = frame["event_time"].dt.date
    return frame


@pytest.mark.slow
def test_activity_models_build_on_a_local_delta_table(tmp_path):
    import duckdb
    from deltalake import write_deltalake

    lake = tmp_path / "lake"
    write_deltalake(
        str(lake / "bronze" / "activity_events"), activity_events(), partition_by=["event_date"]
    )
    settings = load_settings().model_copy(update={"home": tmp_path})
    out = dbt(settings, tmp_path, "build", "--select", "tag:activity", lake_root=str(lake))
    assert "ERROR=0" in out and "stg_trades" not in out

    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        daily = con.execute("SELECT * FROM fct_activity_daily ORDER BY event_date").df()
    assert [str(d.date()) for d in daily["event_date"]] == ["2026-12-01", "2026-12-02"]
    assert daily["users"].tolist() == [2, 1]
    assert daily["sessions"].tolist() == [2, 1]  # (u1, s1) and (u2, s1) are two sessions
    assert daily["events"].tolist() == [3, 2]  # the late duplicate of e5 counted once
    assert daily["page_views"].tolist() == [2, 1]
    assert daily["ended_sessions"].tolist() == [0, 1]


# ---- with Postgres: the queries on real serving tables, through the read-only role ---------


@pytest.fixture
def activity_schema(platform: Settings) -> Iterator[str]:
    """An isolated serving schema with the activity pipeline's tables; dropped after."""
    from lakehouse.migrations import upgrade_serving
    from lakehouse.pipelines.activity import PIPELINE

    name = f"serving_dash{uuid.uuid4().hex[:10]}"
    upgrade_serving(platform, name, [PIPELINE.migrations])
    yield name
    with psycopg.connect(platform.postgres_dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.mark.services
def test_activity_queries_read_the_serving_tables_with_postgres(platform, activity_schema):
    t = AS_OF
    with psycopg.connect(platform.postgres_dsn(), autocommit=True) as conn:
        schema = sql.Identifier(activity_schema)
        conn.cursor().executemany(
            sql.SQL(
                "INSERT INTO {}.page_view_counts (window_start, window_end, page, views)"
                " VALUES (%s, %s, %s, %s)"
            ).format(schema),
            [
                (t - timedelta(minutes=2), t - timedelta(minutes=1), "/home", 3),
                (t - timedelta(minutes=2), t - timedelta(minutes=1), "/cart", 1),
                (t - timedelta(minutes=1), t, "/home", 2),
                (t - timedelta(hours=3), t - timedelta(hours=3, minutes=-1), "/old", 50),
            ],
        )
        conn.cursor().executemany(
            sql.SQL(
                "INSERT INTO {}.active_users (window_start, window_end, active_users)"
                " VALUES (%s, %s, %s)"
            ).format(schema),
            [
                (t - timedelta(minutes=6), t - timedelta(minutes=1), 4),
                (t - timedelta(minutes=5), t, 5),
            ],
        )
        conn.cursor().executemany(
            sql.SQL(
                "INSERT INTO {}.user_sessions (user_id, session_id, session_start, session_end,"
                " duration_s, event_count, pages_viewed, end_reason)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            ).format(schema),
            [
                (
                    "u1",
                    "s1",
                    t - timedelta(minutes=10),
                    t - timedelta(minutes=9),
                    60.2,
                    4,
                    2,
                    "end_event",
                ),
                (
                    "u2",
                    "s1",
                    t - timedelta(minutes=30),
                    t - timedelta(minutes=10),
                    1200.0,
                    9,
                    5,
                    "timeout",
                ),
                (
                    "u3",
                    "s9",
                    t - timedelta(minutes=20),
                    t - timedelta(minutes=19),
                    59.9,
                    2,
                    1,
                    "end_event",
                ),
            ],
        )

    since = t - timedelta(hours=1)
    with queries.serving(platform) as conn:  # the dashboard's read-only role
        assert queries.activity_as_of(conn, activity_schema) == t
        per_minute = queries.page_views_per_minute(conn, activity_schema, since)
        pages = queries.top_pages(conn, activity_schema, since)
        users = queries.active_users(conn, activity_schema, since)
        sessions = queries.session_lengths(conn, activity_schema, since)
        with pytest.raises(
            (psycopg.errors.ReadOnlySqlTransaction, psycopg.errors.InsufficientPrivilege)
        ):
            conn.execute(
                sql.SQL("DELETE FROM {}.user_sessions").format(sql.Identifier(activity_schema))
            )

    assert per_minute["views"].tolist() == [4, 2]
    assert list(pages.itertuples(index=False, name=None)) == [("/home", 5), ("/cart", 1)]
    assert users["active_users"].tolist() == [4, 5]
    assert users["window_end"].iloc[-1] == pd.Timestamp(t)
    assert list(sessions.itertuples(index=False, name=None)) == [
        ("end_event", 60, 2),
        ("timeout", 1200, 1),
    ]
    # Each figure takes what its query returns.
    charts.page_views_per_minute(per_minute)
    charts.top_pages(pages)
    charts.active_users(users)
    charts.session_lengths(sessions)


@pytest.mark.services
def test_an_empty_serving_schema_reads_as_no_data_with_postgres(platform, activity_schema):
    with queries.serving(platform) as conn:
        assert queries.activity_as_of(conn, activity_schema) is None
    with queries.serving(platform) as conn, pytest.raises(queries.NoData) as missing:
        queries.activity_as_of(conn, "serving_no_such_schema")
    assert str(missing.value) == queries.ACTIVITY_TABLES_MISSING
