"""The orders pipeline end to end on the real platform (Kafka, S3, Postgres, Spark, the
MongoDB-wire server).

Two runs of the same orders (tests/orders.py says why which events are late is fixed):
- killed: the first part streamed in small batches, the driver SIGKILLed mid-stream and
  restarted to drain, then the second part drained. Every sink must hold the oracle's final
  states, computed in plain Python from the producer's events, and the counts must
  reconcile. The first part has no late events and no duplicates, so everything dropped is
  dropped by the two clean drains, whose summaries count it exactly.
- shuffled: the same on-time events, duplicates included, in a random order, read in one
  micro-batch (no watermark moves inside a batch, so the order of arrival is all that
  differs), on the standalone Spark cluster.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from lakehouse.layout import Layout
from lakehouse.pipelines.orders import BRONZE_QUERY, JOB, MATCHING_QUERY, MONGO_COLLECTION
from producers.orders import simulate
from tests.conftest import isolated_layout
from tests.market import driver_command, run_json, start_driver, table
from tests.orders import (
    AMOUNT_MISMATCH,
    EXPIRED,
    FINAL_STATUSES,
    PAID,
    TIMEOUT_MS,
    WATERMARK_MS,
    accepted_events,
    expected_counts,
    expected_quarantine,
    final_states,
    produce,
)

pytestmark = [pytest.mark.services, pytest.mark.spark, pytest.mark.slow]

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
COMMON = {"malformed": 0.02, "missing_partner": 0.06}
# The first part spans 50 minutes of event time (orders expire within it), the second 30
# seconds with late events 5 minutes behind its clock: behind the watermark, however batched.
PARTS = (
    {"count": 4_000, "seed": 21, "step_ms": 750, "late": 0.0, "duplicates": 0.0},
    {
        "count": 300,
        "seed": 22,
        "step_ms": 100,
        "late": 0.2,
        "late_by_ms": 300_000,
        "duplicates": 0.05,
    },
)
COLUMNS = ["status", "order_amount", "paid_amount", "order_time_ms", "payment_time_ms"]


def pipeline_command(layout: Layout, *extra: str, master: str = "local[2]") -> list[str]:
    return driver_command(JOB, layout, "--param", "orders.buckets=4", *extra, master=master)


def run_once(layout: Layout) -> dict:
    return run_json(pipeline_command(layout, "--once"), timeout=900)


def produce_all(layout: Layout, between=None) -> list[dict]:
    reports, start = [], START_MS
    for number, part in enumerate(PARTS):
        options = {**COMMON, **part}
        count = options.pop("count")
        reports.append(produce(namespace=layout.namespace, count=count, start_ms=start, **options))
        start = reports[-1]["clock_end_ms"]
        if between and number == 0:
            between()
    return reports


def regenerated() -> list:
    """Every message the two producer runs sent, generated again in-process."""
    messages, start = [], START_MS
    for part in PARTS:
        options = {**COMMON, **part}
        count = options.pop("count")
        sent, start = simulate(count, start_ms=start, **options)
        messages.extend(sent)
    return messages


def final_watermark_ms(messages) -> int:
    return max(e["event_timestamp"] for e in accepted_events(messages)) - WATERMARK_MS


def expected_states(messages: list) -> pd.DataFrame:
    states = final_states(messages, watermark_ms=final_watermark_ms(messages))
    frame = pd.DataFrame.from_dict(states, orient="index")[COLUMNS]
    return frame.rename_axis("order_id").sort_index()


def epoch_ms(column: pd.Series) -> pd.Series:
    """Epoch milliseconds as floats, NaN for none (as the oracle's frame has them)."""
    times = pd.to_datetime(column, utc=True)
    return (times.astype("int64") // 1_000_000).astype("float64").where(times.notna())


def as_states(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of order_status / order_outcomes / the collection in the oracle's columns."""
    out = pd.DataFrame(
        {
            "order_id": rows["order_id"],
            "status": rows["status"],
            "order_amount": pd.to_numeric(rows["order_amount"]).astype("float64"),
            "paid_amount": pd.to_numeric(rows["paid_amount"]).astype("float64"),
            "order_time_ms": epoch_ms(rows["order_time"]),
            "payment_time_ms": epoch_ms(rows["payment_time"]),
        }
    )
    return out.set_index("order_id").sort_index()


def postgres_states(platform, layout) -> pd.DataFrame:
    with psycopg.connect(platform.postgres_dsn()) as conn:
        cursor = conn.execute(f'SELECT * FROM "{layout.serving_schema}".order_status')
        rows = pd.DataFrame(cursor.fetchall(), columns=[c.name for c in cursor.description])
    return as_states(rows)


def mongo_states(platform, layout) -> pd.DataFrame:
    from lakehouse.mongo import mongo_client

    with mongo_client(platform) as client:
        docs = list(client[platform.mongo_database][layout.collection(MONGO_COLLECTION)].find())
    rows = pd.DataFrame(docs).rename(columns={"_id": "order_id"})
    for column in ("order_amount", "paid_amount", "order_time", "payment_time"):
        if column not in rows:
            rows[column] = None
    return as_states(rows)


def assert_states_equal(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert got.index.is_unique, "an order has more than one row"
    # Exact up to float noise: amounts are in cents, times in whole milliseconds.
    pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=0, atol=1e-3)


@pytest.fixture(scope="module")
def shuffled(platform):
    """The on-time events and duplicates of both parts in a random order, one drain, on the
    standalone cluster as a user who outgrew local[*] runs it (the driver on the platform's
    Spark master, the state function in the worker's Python)."""
    from kafka import KafkaProducer

    layout = isolated_layout(platform, "orders", "s", partitions=1)
    messages = [m for m in regenerated() if m.kind in ("events", "duplicates")]
    random.Random(5).shuffle(messages)
    producer = KafkaProducer(bootstrap_servers=platform.kafka_bootstrap, linger_ms=20)
    for message in messages:
        producer.send(layout.topic(message.topic), key=message.key, value=message.value)
    producer.flush()
    producer.close()
    command = pipeline_command(layout, "--once", master=platform.spark_cluster_master)
    report = run_json(command, timeout=900)
    return layout, messages, report


@pytest.fixture(scope="module")
def killed(platform):
    """The first part streamed in small batches, the driver killed mid-stream, restarted."""
    layout = isolated_layout(platform, "orders", "k", partitions=1)

    def stream_and_kill() -> None:
        driver = start_driver(pipeline_command(layout, "--interval", "0", "--max-offsets", "1500"))
        commits = {
            q: Path(layout.checkpoint(q)) / "commits" for q in (BRONZE_QUERY, MATCHING_QUERY)
        }
        try:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline and (
                len(list(commits[BRONZE_QUERY].glob("[0-9]*"))) < 2
                or len(list(commits[MATCHING_QUERY].glob("[0-9]*"))) < 1
            ):
                assert driver.poll() is None, "the pipeline exited before it was killed"
                time.sleep(0.5)
            assert len(list(commits[MATCHING_QUERY].glob("[0-9]*"))) >= 1, "no progress in time"
        finally:
            os.killpg(driver.pid, signal.SIGKILL)  # no clean shutdown: mid-batch if in one
            driver.wait(30)
        drains.append(run_once(layout))

    drains: list[dict] = []
    reports = produce_all(layout, between=stream_and_kill)
    drains.append(run_once(layout))
    return layout, reports, drains


def test_every_record_is_accepted_quarantined_or_counted_as_dropped(spark, killed):
    layout, reports, drains = killed
    messages = regenerated()
    counts = expected_counts(*reports)
    assert counts["late"] > 0 and counts["duplicates"] > 0 and counts["quarantined"] > 0
    events = table(spark, layout, "order_events")
    assert not events["event_id"].duplicated().any()
    assert set(events["event_id"]) == {e["event_id"] for e in accepted_events(messages)}
    assert len(events) == counts["accepted"]
    quarantine = table(spark, layout, "quarantine_orders")
    assert quarantine["reason"].value_counts().to_dict() == expected_quarantine(messages)
    assert quarantine["raw_value"].notna().all()
    bronze = [d[BRONZE_QUERY] for d in drains]
    assert sum(b["rows_dropped_by_watermark"] for b in bronze) == counts["late"]
    assert sum(b["duplicates_dropped"] for b in bronze) == counts["duplicates"]
    sent = sum(r["sent"] for r in reports)
    assert sent == len(events) + len(quarantine) + counts["late"] + counts["duplicates"]


def test_every_sink_holds_the_oracle_final_states_once_per_order(platform, spark, killed):
    layout, _, _ = killed
    want = expected_states(regenerated())
    assert set(want["status"]) >= set(FINAL_STATUSES)  # the run exercised every ending
    assert_states_equal(postgres_states(platform, layout), want)
    assert_states_equal(mongo_states(platform, layout), want)
    assert_states_equal(as_states(table(spark, layout, "order_outcomes")), want)
    with psycopg.connect(platform.postgres_dsn()) as conn:
        batches = conn.execute(
            f'SELECT count(*) FROM "{layout.serving_schema}".sink_batches'
        ).fetchone()[0]
    assert batches >= 3  # the killed driver committed batches before the restarts


def test_history_holds_each_change_once_and_expiry_at_the_deadline(spark, killed):
    layout, _, _ = killed
    messages = regenerated()
    history = table(spark, layout, "order_state_changes")
    assert not history.duplicated(["order_id", "version"]).any()
    want = expected_states(messages)
    # Versions run 1..n per order, the last row is the final state, no change repeated.
    for order_id, rows in history.groupby("order_id"):
        assert sorted(rows["version"]) == list(range(1, len(rows) + 1)), order_id
        assert rows.sort_values("version")["status"].iloc[-1] == want.at[order_id, "status"]
    matches = history[history["status"].isin([PAID, AMOUNT_MISMATCH])]
    assert matches["order_id"].is_unique  # a duplicate never gives a second match
    expired = history[history["status"] == EXPIRED]
    first = pd.DataFrame(accepted_events(messages)).groupby("order_id")["event_timestamp"].min()
    deadline = expired["order_id"].map(first) + TIMEOUT_MS
    assert len(expired) > 0
    assert (epoch_ms(expired["changed_at"]) == deadline).all()
    assert (deadline < final_watermark_ms(messages)).all()  # none expired before its time


def test_a_shuffled_arrival_order_gives_the_same_final_states_on_the_cluster(platform, shuffled):
    layout, messages, report = shuffled
    assert report[MATCHING_QUERY]["input_rows"] == len(accepted_events(messages))
    assert_states_equal(postgres_states(platform, layout), expected_states(regenerated()))
