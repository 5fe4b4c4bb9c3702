"""The CSV drops pipeline end to end on the real platform (Spark, Postgres, S3).

One killed run, shared by the tests: generated files (bad rows of every kind, ids to
normalise) plus two files that cannot be read are dropped into a local input folder; the
driver streams them one file per micro-batch and is SIGKILLed mid-stream; more files
arrive, among them an exact copy of a loaded file under another name; a restart drains
the rest. Every expectation comes from the generator's own account of each row.
A second, small run reads its files from an s3a:// prefix on the platform's bucket,
written there by the generator's command line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from infra.input_folders import waiting_files
from lakehouse.layout import Layout
from lakehouse.pipelines.csv import (
    ARCHIVE_FOLDER,
    JOB,
    LOAD_QUERY,
    REJECTED_FOLDER,
    ROW_REASONS,
)
from lakehouse.settings import PROJECT_ROOT
from producers.csv_files import GeneratedFile, generate, write_atomically
from tests.conftest import TEST_ENV, isolated_layout
from tests.market import driver_command, run_json, start_driver

pytestmark = [pytest.mark.services, pytest.mark.spark, pytest.mark.slow]

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SHARES = {
    "missing": 0.03,
    "non_positive_price": 0.03,
    "unknown_type": 0.03,
    "malformed_price": 0.03,
    "malformed_timestamp": 0.03,
    "wrong_columns": 0.03,
    "messy_ids": 0.1,
}
FIRST, SECOND = 6, 3  # files before the kill, files after it
UNREADABLE = {  # name: (content, why it cannot be read)
    "image.csv": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8"),
    "nul.csv": (b"event_id,user_id\x00\n", "NUL bytes"),
    "no-header.csv": (b"e1,U1,P1,view,9.99,2026-01-01T00:00:00Z\n", "not the header"),
}


def command(layout: Layout, *extra: str) -> list[str]:
    return driver_command(JOB, layout, *extra)


def query(platform, layout: Layout, sql: str) -> pd.DataFrame:
    with psycopg.connect(platform.postgres_dsn()) as conn:
        cursor = conn.execute(sql.format(schema=f'"{layout.serving_schema}"'))
        return pd.DataFrame(cursor.fetchall(), columns=[c.name for c in cursor.description])


def loaded_files(platform, layout: Layout) -> int:
    try:
        return len(query(platform, layout, "SELECT source_file FROM {schema}.csv_files"))
    except psycopg.errors.UndefinedTable:
        return 0  # the driver has not created its tables yet


def mid_batch(checkpoint: Path, after: int) -> bool:
    """At least `after` batches committed and the next one planned but not committed."""
    numbered = lambda d: {int(p.name) for p in (checkpoint / d).glob("[0-9]*")}  # noqa: E731
    if not (checkpoint / "commits").exists():
        return False
    committed, planned = numbered("commits"), numbered("offsets")
    return len(committed) >= after and max(planned, default=-1) > max(committed, default=-1)


def accepted(files: list[GeneratedFile]) -> pd.DataFrame:
    """The events the files hold, each once (a copy's rows are its original's)."""
    rows = [r.event for f in files if f.copy_of is None for r in f.rows if r.reason is None]
    events = pd.DataFrame(rows)
    assert events["event_id"].is_unique
    return events.set_index("event_id").sort_index()


@pytest.fixture(scope="module")
def killed(platform):
    layout = isolated_layout(platform, "csv", "c")
    folder = Path(layout.folder(platform.csv_input_folder))
    folder.mkdir(parents=True)
    files = generate(FIRST + SECOND, 150, seed=7, start_ms=START_MS, step_ms=1_000, **SHARES)
    for generated in files[:FIRST]:
        write_atomically(folder, generated.name, generated.text.encode())
    for name, (content, _) in UNREADABLE.items():
        write_atomically(folder, name, content)

    driver = start_driver(command(layout, "--interval", "0", "--param", "csv.files_per_batch=1"))
    checkpoint = Path(layout.checkpoint(LOAD_QUERY))
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not mid_batch(checkpoint, after=2):
            assert driver.poll() is None, "the pipeline exited before it was killed"
            time.sleep(0.05)
        assert mid_batch(checkpoint, after=2), "no progress in time"
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(30)
    killed_at = loaded_files(platform, layout)

    copy = GeneratedFile("copy-of-first.csv", files[0].text, files[0].rows, files[0].name)
    for generated in [*files[FIRST:], copy]:
        write_atomically(folder, generated.name, generated.text.encode())
    report = run_json(command(layout, "--once"), timeout=600)
    return layout, folder, [*files, copy], killed_at, report


def test_every_row_of_every_file_is_loaded_or_quarantined_with_its_reason(platform, killed):
    layout, folder, files, killed_at, _ = killed
    assert 2 <= killed_at < len(files) + len(UNREADABLE)  # the kill came mid-stream
    summary = query(platform, layout, "SELECT * FROM {schema}.csv_files").set_index("source_file")
    quarantine = query(platform, layout, "SELECT * FROM {schema}.user_events_quarantine")
    reasons_seen = set()
    twins = {files[-1].name, files[-1].copy_of}
    for generated in files:
        path = f"file:{folder / generated.name}"
        row = summary.loc[path]
        expected_refused = {(r.line_number, r.reason) for r in generated.rows if r.reason}
        refused = quarantine[quarantine["source_file"] == path]
        assert set(zip(refused["line_number"], refused["reason"], strict=True)) == (
            expected_refused
        ), generated.name
        assert row["status"] == "loaded" and row["rows"] == len(generated.rows)
        assert row["quarantined"] == len(expected_refused)
        assert row["loaded"] + row["already_loaded"] + row["quarantined"] == row["rows"]
        if generated.name not in twins:
            assert row["already_loaded"] == 0
        reasons_seen |= {reason for _, reason in expected_refused}
    # A file and its copy: whichever was read first (or sorts first in one batch) loaded
    # the rows, the other found every one of them loaded already.
    valid = sum(1 for r in files[-1].rows if r.reason is None)
    pair = summary.loc[[f"file:{folder / name}" for name in twins]]
    assert sorted(pair["loaded"]) == [0, valid] and sorted(pair["already_loaded"]) == [0, valid]
    assert reasons_seen >= set(ROW_REASONS) - {"value_too_long"}
    assert (quarantine["raw_line"].str.len() > 0).all()


def test_user_events_hold_each_accepted_event_once_normalised(platform, killed):
    layout, _, files, _, _ = killed
    want = accepted(files)
    got = query(platform, layout, "SELECT * FROM {schema}.user_events")
    assert got["event_id"].is_unique
    got = got.set_index("event_id").sort_index()
    assert list(got.index) == list(want.index)
    assert (got["user_id"] == want["user_id"]).all()
    assert (got["product_id"] == want["product_id"]).all()
    assert (got["event_type"] == want["event_type"]).all()
    assert (got["product_price"].astype(float) == want["product_price"]).all()
    times_ms = pd.to_datetime(got["event_timestamp"], utc=True).astype("int64") // 1_000_000
    assert (times_ms == want["event_time_ms"]).all()
    assert got["processed_at"].notna().all()
    batches = query(platform, layout, "SELECT count(*) AS n FROM {schema}.sink_batches")
    assert batches["n"].iloc[0] >= 3  # the killed driver committed batches of its own


def test_unreadable_files_are_moved_aside_with_their_reason_and_the_rest_archived(platform, killed):
    layout, folder, files, _, report = killed
    summary = query(platform, layout, "SELECT * FROM {schema}.csv_files").set_index("source_file")
    for name, (content, why) in UNREADABLE.items():
        row = summary.loc[f"file:{folder / name}"]
        assert row["status"] == "rejected" and why in row["reason"]
        assert row["rows"] == row["loaded"] == row["quarantined"] == 0
        assert why in (folder / REJECTED_FOLDER / f"{name}.reason").read_text()
        assert (folder / REJECTED_FOLDER / name).read_bytes() == content
    assert sorted(p.name for p in folder.iterdir()) == [ARCHIVE_FOLDER, REJECTED_FOLDER]
    assert waiting_files(str(folder), platform) == []
    archived = sorted(p.name for p in (folder / ARCHIVE_FOLDER).iterdir())
    assert archived == sorted(f.name for f in files)
    assert report[LOAD_QUERY]["batches"] >= 1


def test_the_views_equal_a_pandas_oracle(platform, killed):
    layout, _, files, _, _ = killed
    events = accepted(files).reset_index()
    events["event_date"] = pd.to_datetime(events["event_time_ms"], unit="ms").dt.date
    events["price"] = events["product_price"].where(events["event_type"] == "purchase")
    by_type = pd.crosstab([events["product_id"], events["event_date"]], events["event_type"])
    buyers = events[events["event_type"] == "purchase"].groupby(["product_id", "event_date"])
    want = pd.DataFrame(
        {
            "views": by_type.get("view", 0),
            "purchases": by_type.get("purchase", 0),
            "buyers": buyers["user_id"].nunique(),
            "revenue": events.groupby(["product_id", "event_date"])["price"].sum(),
        }
    ).fillna(0)
    got = query(platform, layout, "SELECT * FROM {schema}.purchase_analytics").set_index(
        ["product_id", "event_date"]
    )
    got = got.sort_index()
    want = want.sort_index()
    assert list(got.index) == list(want.index)
    assert (got["views"] == want["views"]).all() and (got["purchases"] == want["purchases"]).all()
    assert (got["buyers"] == want["buyers"]).all()
    assert ((got["revenue"].astype(float) - want["revenue"]).abs() < 1e-6).all()
    rate = (want["purchases"] / want["views"].where(want["views"] > 0)).round(4)
    assert ((got["view_to_purchase_rate"].astype(float) - rate).abs().fillna(0) < 1e-9).all()

    per_user = events.groupby("user_id")
    want_users = pd.DataFrame(
        {
            "events": per_user.size(),
            "purchases": per_user["event_type"].apply(lambda t: (t == "purchase").sum()),
            "distinct_products": per_user["product_id"].nunique(),
            "total_spend": per_user["price"].sum(),
            "first_seen_ms": per_user["event_time_ms"].min(),
            "last_seen_ms": per_user["event_time_ms"].max(),
        }
    ).sort_index()
    users = query(platform, layout, "SELECT * FROM {schema}.user_activity_summary")
    users = users.set_index("user_id").sort_index()
    assert list(users.index) == list(want_users.index)
    for column in ("events", "purchases", "distinct_products"):
        assert (users[column] == want_users[column]).all(), column
    assert ((users["total_spend"].astype(float) - want_users["total_spend"]).abs() < 1e-6).all()
    for column in ("first_seen", "last_seen"):
        ms = pd.to_datetime(users[column], utc=True).astype("int64") // 1_000_000
        assert (ms == want_users[f"{column}_ms"]).all(), column


def test_files_under_an_s3a_prefix_load_the_same(platform):
    """The generator's command line uploads to the prefix; the driver reads it with s3a."""
    layout = isolated_layout(platform, "csv", "s")
    base = f"s3a://{platform.s3_bucket}/incoming/csv-tests"
    env = {**TEST_ENV, "LAKEHOUSE_CSV_INPUT": base}
    prefix = layout.folder(base)
    options = ["--files", "2", "--rows", "50", "--interval", "0", "--seed", "3"]
    start = ["--start", "2026-01-01T00:00:00Z", "--step-ms", "1000"]
    produced = subprocess.run(
        [sys.executable, "-m", "producers.csv_files", "--folder", prefix, *options, *start],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert produced.returncode == 0, produced.stderr
    assert json.loads(produced.stdout.strip().splitlines()[-1])["files"] == 2
    drained = subprocess.run(
        command(layout, "--once"),
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert drained.returncode == 0, drained.stderr[-3000:]
    files = generate(2, 50, seed=3, start_ms=START_MS, step_ms=1_000)
    got = query(platform, layout, "SELECT event_id FROM {schema}.user_events")
    assert sorted(got["event_id"]) == list(accepted(files).index)
    summary = query(platform, layout, "SELECT * FROM {schema}.csv_files")
    assert sorted(summary["source_file"]) == sorted(f"{prefix}/{f.name}" for f in files)
    assert (summary["status"] == "loaded").all()
    assert waiting_files(prefix, platform) == []  # read through S3's listing


def test_the_dashboard_reads_files_rows_and_refusals_through_its_role(platform, killed):
    from dashboard import queries

    layout, _, files, _, _ = killed
    refused = [r.reason for f in files for r in f.rows if r.reason]
    with queries.serving(platform) as conn:
        totals = queries.csv_file_totals(conn, layout.serving_schema).iloc[0]
        refusals = queries.csv_refusals(conn, layout.serving_schema)
        days = queries.purchases_per_day(conn, layout.serving_schema)
    assert totals["files_read"] == len(files)
    assert totals["files_rejected"] == len(UNREADABLE)
    assert totals["rows_loaded"] == len(accepted(files))
    assert totals["rows_already_loaded"] == sum(1 for r in files[-1].rows if r.reason is None)
    assert totals["rows_refused"] == len(refused)
    assert dict(zip(refusals["reason"], refusals["rows"], strict=True)) == dict(
        pd.Series(refused).value_counts()
    )
    assert int(days["purchases"].sum()) == (accepted(files)["event_type"] == "purchase").sum()
