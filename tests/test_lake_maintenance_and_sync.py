"""Lake maintenance while the trades stream writes, and the incremental Postgres sync.

Real DAG runs (`airflow dags test`) of `lake_maintenance` and `postgres_sync` against a
streaming driver on real Kafka, S3 and Postgres. Maintenance runs inside the driver, under
its writers' locks; afterwards the Delta log has no gap, OPTIMIZE compacted the closed
partitions, and every count is exact. The sync copies silver exactly once: re-running it,
or running it after an OPTIMIZE, adds nothing.
"""

from __future__ import annotations

import os
import signal
from datetime import date

import pandas as pd
import psycopg
import pytest
from delta.tables import DeltaTable

from spark.jobs.postgres_sync import serving_schema, sync
from spark.maintenance import files_per_partition, optimize_closed_partitions
from tests.conftest import airflow_dags_test
from tests.market import (
    START_MS,
    assert_bars_match,
    check_silver,
    produce,
    rows,
    run_once,
    send_sentinel,
    serving,
    start_pipeline,
    wait_for,
)

pytestmark = [pytest.mark.services, pytest.mark.spark, pytest.mark.slow]

TODAY = date.today()


def delta_history(spark, path: str) -> pd.DataFrame:
    return DeltaTable.forPath(spark, path).history().select("version", "operation").toPandas()


def maintenance_results(settings, job_key: str) -> list[tuple]:
    with psycopg.connect(settings.postgres_dsn()) as conn:
        return conn.execute(
            "SELECT table_name, action, status, result FROM maintenance_requests"
            " WHERE job_key = %s ORDER BY id",
            (job_key,),
        ).fetchall()


def test_maintenance_runs_in_the_driver_while_the_stream_writes(spark, platform, layout):
    namespace = layout.lake_root.rsplit("/", 1)[-1]
    # One run of the producer: event time rises with the offsets in every partition, so no
    # trade falls behind the watermark however the backlog is cut into micro-batches.
    sent = produce(layout, count=8000, seed=21, start_ms=START_MS)
    # Several micro-batches: several small files per date partition, as a real stream leaves.
    driver = start_pipeline(layout, "--interval", "0", "--max-offsets", "1500")
    tables = ["bronze_trades", "trades_enriched"]  # the other three only add minutes here
    try:
        wait_for(lambda: rows(spark, layout, "bronze_trades") > 1000, 600, "the first batches")
        total = sent["trades"]
        # The stream is still working through its backlog while this runs.
        conf = {"namespace": namespace, "tables": tables}
        airflow_dags_test(platform, "lake_maintenance", conf)
        assert driver.poll() is None, "the stream died during maintenance"
        send_sentinel(platform, layout, START_MS + 24 * 3600 * 1000)
        wait_for(lambda: rows(spark, layout, "trades_enriched") >= total, 600, "silver")
    finally:
        os.killpg(driver.pid, signal.SIGTERM)
        driver.wait(120)

    results = maintenance_results(platform, f"market_pipeline@{namespace}")
    assert {(t, a) for t, a, _, _ in results} == {
        (t, a) for t in tables for a in ("optimize", "vacuum")
    }
    assert all(status == "done" for _, _, status, _ in results), results
    bronze_optimize = next(r for t, a, _, r in results if (t, a) == ("bronze_trades", "optimize"))
    assert bronze_optimize["files_removed"] > bronze_optimize["files_added"] >= 1

    # No commit was lost or overwritten: the log has no gap, and every count is exact.
    for name in tables:
        history = delta_history(spark, layout.table(name))
        versions = sorted(history["version"])
        assert versions == list(range(versions[-1] + 1)), f"{name}: a gap in the Delta log"
    # Silver holds its trades until the watermark passes them, so only bronze had a closed
    # partition of several files to compact while the stream ran.
    assert "OPTIMIZE" in set(delta_history(spark, layout.table("bronze_trades"))["operation"])
    bronze = spark.read.format("delta").load(layout.table("bronze_trades")).toPandas()
    assert len(bronze) == total
    assert not bronze.duplicated(["kafka_topic", "kafka_partition", "kafka_offset"]).any()
    check_silver(spark, layout, total)


def test_sync_copies_silver_once_and_skips_optimize_commits(spark, platform, layout):
    namespace = layout.lake_root.rsplit("/", 1)[-1]
    schema = serving_schema(namespace)
    silver_path = layout.table("trades_enriched")
    first = produce(layout, count=3000, seed=31, start_ms=START_MS)
    send_sentinel(platform, layout, START_MS + 24 * 3600 * 1000)
    run_once(layout)

    # The DAG, through Airflow and spark-submit: Postgres level with silver, bars included.
    airflow_dags_test(platform, "postgres_sync", {"namespace": namespace})
    silver = check_silver(spark, layout, first["trades"])
    trades, bars, (version, synced) = serving(platform, schema)
    assert sorted(trades["trade_id"]) == sorted(silver["trade_id"])
    assert synced == len(silver)
    assert_bars_match(bars, silver)

    # Again: nothing changes.
    sync(spark, platform, silver_path, schema, max_versions=100)
    assert serving(platform, schema)[2] == (version, synced)

    # New data: only the new rows arrive.
    second = produce(layout, count=2000, seed=32, start_ms=START_MS + 2 * 24 * 3600 * 1000)
    send_sentinel(platform, layout, START_MS + 3 * 24 * 3600 * 1000)
    run_once(layout)
    sync(spark, platform, silver_path, schema, max_versions=100)
    silver = check_silver(spark, layout, first["trades"] + second["trades"])
    trades, bars, (version, synced) = serving(platform, schema)
    assert sorted(trades["trade_id"]) == sorted(silver["trade_id"])
    assert synced == len(silver)
    assert_bars_match(bars, silver)

    # An OPTIMIZE (no stream runs: this test is the table's only writer) commits a new
    # version without data change; the sync moves past it and adds no row.
    assert max(files_per_partition(spark, silver_path, "event_date", TODAY).values()) > 1
    assert optimize_closed_partitions(spark, silver_path, "event_date", TODAY)["files_removed"]
    sync(spark, platform, silver_path, schema, max_versions=100)
    trades_after, _, (version_after, synced_after) = serving(platform, schema)
    assert version_after > version
    assert synced_after == synced and len(trades_after) == len(silver)
