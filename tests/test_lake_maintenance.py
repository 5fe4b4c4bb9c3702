"""Lake maintenance while the trades stream writes.

A real DAG run (`airflow dags test`) of `lake_maintenance` against a streaming driver on
real Kafka, S3 and Postgres. Maintenance runs inside the driver, under its writers' locks;
afterwards the Delta log has no gap, OPTIMIZE compacted the closed partitions, and every
count is exact. (The Postgres sync is tested in test_serving_sync_and_replay.py.)
"""

from __future__ import annotations

import os
import signal
from datetime import date

import pandas as pd
import psycopg
import pytest
from delta.tables import DeltaTable

from tests.conftest import airflow_dags_test
from tests.market import (
    START_MS,
    check_silver,
    produce,
    recorded_kafka_lag,
    rows,
    send_sentinel,
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
    namespace = layout.namespace
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
        conf = {"namespace": namespace, "jobs": ["market_pipeline"], "tables": tables}
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
    # The consumer lag the health page shows: batches of 1500 left records in Kafka, and the
    # last batch read up to the end.
    lag = recorded_kafka_lag(platform, layout, "market_bronze")
    assert lag[0] is not None and lag[0] > 0
    assert lag[-1] == 0
    assert not bronze.duplicated(["kafka_topic", "kafka_partition", "kafka_offset"]).any()
    check_silver(spark, layout, total)
