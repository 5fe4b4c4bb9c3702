"""The web activity pipeline end to end on the real platform (Kafka, S3, Postgres, Spark).

One run (tests/activity.py says why which events are late is fixed): the driver streams the
first part in small batches, is SIGKILLed mid-stream and restarted to drain, then the
second part is drained. Every table is checked against the pandas oracle. The first part
has no late events and no duplicates, so all drops happen in the two clean drains, whose
summaries and progress rows count them exactly.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from control.consume import read_to_end
from lakehouse.pipelines.activity import (
    BRONZE_QUERY,
    ENRICHED_TOPIC,
    PAGE_VIEWS_QUERY,
    SESSIONS_QUERY,
)
from tests.activity import (
    oracle,
    produce_all,
    regenerated,
    run_once,
    start_pipeline,
)
from tests.conftest import isolated_layout, run_cli
from tests.market import query_id, table

pytestmark = [pytest.mark.services, pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(scope="module")
def killed(platform):
    """The driver killed while it streams the first part in small batches, restarted to
    drain it, then the second part drained."""
    layout = isolated_layout(platform, "activity", "k", partitions=1)

    def stream_and_kill(_first) -> None:
        driver = start_pipeline(layout, "--interval", "0", "--max-offsets", "400")
        commits = {
            q: Path(layout.checkpoint(q)) / "commits"
            for q in (BRONZE_QUERY, PAGE_VIEWS_QUERY, SESSIONS_QUERY)
        }
        try:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline and (
                len(list(commits[BRONZE_QUERY].glob("[0-9]*"))) < 3
                or not all(list(c.glob("[0-9]*")) for c in commits.values())
            ):
                assert driver.poll() is None, "the pipeline exited before it was killed"
                time.sleep(0.5)
            assert len(list(commits[BRONZE_QUERY].glob("[0-9]*"))) >= 3, "no progress in time"
        finally:
            os.killpg(driver.pid, signal.SIGKILL)  # no clean shutdown: mid-batch if in one
            driver.wait(30)
        drains.append(run_once(layout))

    drains: list[dict] = []
    reports = produce_all(layout, between=stream_and_kill)
    drains.append(run_once(layout))
    return layout, reports, drains


def serving(platform, layout, sql: str) -> pd.DataFrame:
    with psycopg.connect(platform.postgres_dsn()) as conn:
        conn.execute(f'SET search_path TO "{layout.serving_schema}"')
        cursor = conn.execute(sql)
        return pd.DataFrame(cursor.fetchall(), columns=[c.name for c in cursor.description])


def epoch_ms(column: pd.Series) -> pd.Series:
    return (pd.to_datetime(column, utc=True).astype("int64") // 1_000_000).astype("int64")


def page_views(platform, layout) -> pd.DataFrame:
    rows = serving(
        platform, layout, "SELECT window_start, window_end, page, views FROM page_view_counts"
    )
    rows["window_start"], rows["window_end"] = (
        epoch_ms(rows["window_start"]),
        epoch_ms(rows["window_end"]),
    )
    return rows.sort_values(["window_start", "page"]).reset_index(drop=True)


def active_users(platform, layout) -> pd.DataFrame:
    rows = serving(
        platform, layout, "SELECT window_start, window_end, active_users FROM active_users"
    )
    rows["window_start"], rows["window_end"] = (
        epoch_ms(rows["window_start"]),
        epoch_ms(rows["window_end"]),
    )
    return rows.sort_values("window_start").reset_index(drop=True)


def sessions(platform, layout) -> pd.DataFrame:
    rows = serving(
        platform,
        layout,
        "SELECT user_id, session_id, session_start, session_end, duration_s, event_count,"
        " pages_viewed, end_reason FROM user_sessions",
    )
    rows["session_start_ms"] = epoch_ms(rows.pop("session_start"))
    rows["session_end_ms"] = epoch_ms(rows.pop("session_end"))
    columns = ["user_id", "session_id", "session_start_ms", "session_end_ms", "duration_s"]
    return (
        rows[[*columns, "event_count", "pages_viewed", "end_reason"]]
        .sort_values(["user_id", "session_id", "session_start_ms"])
        .reset_index(drop=True)
    )


def enriched_event_ids(platform, layout) -> list[str]:
    """Every event id a read_committed consumer reads from enriched_activity, up to the end."""
    import json

    values = read_to_end(platform, layout.topic(ENRICHED_TOPIC), timeout_s=120)
    return [json.loads(value)["event_id"] for value in values]


def progress_sums(platform, layout, query: str) -> tuple[int, int, int]:
    with psycopg.connect(platform.postgres_dsn()) as conn:
        return conn.execute(
            "SELECT sum(input_rows), sum(rows_dropped_by_watermark), sum(duplicates_dropped)"
            " FROM stream_progress WHERE query_id = %s",
            (query_id(layout, query),),
        ).fetchone()


def test_every_record_is_accepted_quarantined_or_counted_as_dropped(platform, spark, killed):
    layout, reports, drains = killed
    expected = oracle(regenerated(reports))
    sent = sum(r["sent"] for r in reports)
    assert reports[1]["by_kind"]["late"] == expected.late > 0
    assert expected.duplicates > 0 and expected.malformed

    events = table(spark, layout, "activity_events")
    assert len(events) == len(expected.accepted)
    assert not events["event_id"].duplicated().any()
    assert set(events["event_id"]) == set(expected.accepted["event_id"])
    quarantine = table(spark, layout, "quarantine_activity")
    assert quarantine["reason"].value_counts().to_dict() == expected.malformed
    assert quarantine["raw_value"].notna().all()

    # Spark counted what it dropped; the listener kept it per batch in stream_progress.
    bronze = [d[BRONZE_QUERY] for d in drains]
    assert sum(b["rows_dropped_by_watermark"] for b in bronze) == expected.late
    assert sum(b["duplicates_dropped"] for b in bronze) == expected.duplicates
    # Input rows are left out: a batch the kill cut short after its commit has no row.
    _, late, duplicates = progress_sums(platform, layout, BRONZE_QUERY)
    assert (late, duplicates) == (expected.late, expected.duplicates)
    assert sent == len(events) + len(quarantine) + expected.late + expected.duplicates


def test_the_health_page_shows_the_dropped_events(platform, killed):
    from dashboard.queries import stream_health

    layout, reports, _ = killed
    expected = oracle(regenerated(reports))
    bronze = stream_health(platform).set_index("query_id").loc[query_id(layout, BRONZE_QUERY)]
    assert bronze["late_rows_dropped"] == expected.late
    assert bronze["duplicates_dropped"] == expected.duplicates
    assert bronze["kafka_records_behind"] == 0


def test_the_readme_queries_return_rows_in_psql(killed):
    """The queries as a user types them in `lakehouse psql` (here with the run's namespace)."""
    layout, _, _ = killed
    for name, limit in (("page_view_counts", 10), ("active_users", 5), ("user_sessions", 10)):
        query = f"SELECT * FROM {name} LIMIT {limit};"
        result = run_cli("psql", "--namespace", layout.namespace, "--", "-c", query, timeout=60)
        assert result.returncode == 0, result.stderr
        assert f"({limit} rows)" in result.stdout, result.stdout


def test_dbt_daily_mart_over_the_lake_counts_users_and_sessions(platform, killed, tmp_path):
    import duckdb

    from lakehouse.analytics import run_dbt

    layout, reports, _ = killed
    accepted = oracle(regenerated(reports)).accepted
    settings = platform.model_copy(update={"home": tmp_path})  # a marts file of its own
    built = run_dbt(
        settings,
        ["build", "--select", "tag:activity", "--target-path", str(tmp_path / "target")],
        lake_root=layout.lake_root,
        capture=True,
    )
    assert built.returncode == 0, built.stdout[-4000:]
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        daily = con.sql("SELECT event_date, users, sessions, events FROM fct_activity_daily").df()
    day = pd.to_datetime(accepted["event_time_ms"], unit="ms", utc=True).dt.date
    want = accepted.assign(event_date=day).groupby("event_date")
    assert len(daily) == want.ngroups == 1
    assert daily["users"].iloc[0] == accepted["user_id"].nunique()
    assert daily["sessions"].iloc[0] == len(accepted.groupby(["user_id", "session_id"]))
    assert daily["events"].iloc[0] == len(accepted)


def test_windows_equal_the_oracle(platform, killed):
    layout, reports, _ = killed
    expected = oracle(regenerated(reports))
    views = page_views(platform, layout)
    want = expected.page_views()
    assert (views["window_end"] - views["window_start"] == 60_000).all()
    pd.testing.assert_frame_equal(
        views[["window_start", "page", "views"]],
        want.reset_index(drop=True),
        check_dtype=False,
    )
    users = active_users(platform, layout)
    assert (users["window_end"] - users["window_start"] == 300_000).all()
    pd.testing.assert_frame_equal(
        users[["window_start", "active_users"]],
        expected.active_users().reset_index(drop=True),
        check_dtype=False,
    )


def test_sessions_equal_the_oracle_timeouts_included(platform, killed):
    layout, reports, _ = killed
    want = oracle(regenerated(reports)).sessions()
    got = sessions(platform, layout)
    assert set(want["end_reason"]) == {"end_event", "timeout"}
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_a_read_committed_consumer_reads_each_accepted_event_once(platform, killed):
    layout, reports, _ = killed
    ids = enriched_event_ids(platform, layout)
    accepted = oracle(regenerated(reports)).accepted["event_id"]
    assert len(ids) == len(set(ids)) == len(accepted)
    assert set(ids) == set(accepted)


def test_a_killed_driver_restarts_to_each_event_once_in_every_sink(platform, spark, killed):
    layout, reports, _ = killed
    events = table(spark, layout, "activity_events")
    assert not events["event_id"].duplicated().any()
    assert len(events) == len(oracle(regenerated(reports)).accepted)
    ids = enriched_event_ids(platform, layout)
    assert len(ids) == len(set(ids)) == len(events)
    with psycopg.connect(platform.postgres_dsn()) as conn:
        batches = conn.execute(
            f'SELECT count(*) FROM "{layout.serving_schema}".sink_batches'
        ).fetchone()[0]
    assert batches > 6  # the kill run wrote in many small batches
