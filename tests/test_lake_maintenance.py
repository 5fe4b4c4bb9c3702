"""Lake maintenance while the trades stream writes.

A real DAG run (`airflow dags test`) of `lake_maintenance` against a streaming driver on
real Kafka, S3 and Postgres. Maintenance runs inside the driver, under its writers' locks:
OPTIMIZE, then a VACUUM with 0 h of retention that deletes the files OPTIMIZE replaced,
while producers keep sending, bronze keeps committing and silver keeps reading it.
Afterwards the Delta log has no gap and every count is exact. (The
Postgres sync is tested in test_serving_sync_and_replay.py; the VACUUM's reader check in
test_spark_maintenance.py.)
"""

from __future__ import annotations

import os
import signal
import threading

import pandas as pd
import psycopg
import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from tests.conftest import airflow_dags_test
from tests.market import (
    START_MS,
    check_live_bars,
    check_silver,
    produce,
    recorded_kafka_lag,
    rows,
    send_sentinel,
    start_pipeline,
    wait_for,
)

pytestmark = [pytest.mark.services, pytest.mark.spark, pytest.mark.slow]


def delta_history(spark, path: str) -> pd.DataFrame:
    return (
        DeltaTable.forPath(spark, path)
        .history()
        .select("version", "operation", F.col("timestamp").cast("double").alias("at"))
        .toPandas()
    )


def produce_until(layout, stop: threading.Event, sent: list[int]) -> None:
    """A run of 200 trades every few seconds until `stop` is set: a trickle that keeps bronze
    committing without a backlog. Each run starts 0.4 s after the last in event time (it
    spans about 0.2 s), so one bronze batch of at most 1500 records (about 7 runs) covers
    about 3 s of event time, less than the watermark's 5 s. That matters because bronze
    commits trades and references one after the other: silver may read a batch's trades a
    micro-batch before its references, and a reference more than the watermark behind those
    trades would then be late (dropped by the watermark, the trades enriched without it)."""
    chunk = 0
    while not stop.is_set():
        start_ms = START_MS + 60_000 + chunk * 400  # after the first run's 8 s
        sent.append(produce(layout, count=200, seed=100 + chunk, start_ms=start_ms)["trades"])
        chunk += 1
        stop.wait(8)


def last_version(spark, layout, table: str, operation: str) -> int:
    history = delta_history(spark, layout.table(table))
    return int(history[history["operation"] == operation]["version"].max())


def maintenance_results(settings, job_key: str) -> list[tuple]:
    with psycopg.connect(settings.postgres_dsn()) as conn:
        return conn.execute(
            "SELECT table_name, action, status, result, started_at, finished_at"
            " FROM maintenance_requests"
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
        total = sent["trades"]
        # All read first, so the trickle's later event times cannot overtake it.
        wait_for(lambda: rows(spark, layout, "bronze_trades") == total, 600, "bronze")
        # OPTIMIZE, then a VACUUM with 0 h of retention that deletes the files OPTIMIZE
        # replaced, while trades keep arriving and bronze keeps committing. The VACUUM waits
        # (holding bronze's writer lock) until silver has read past the OPTIMIZE.
        stop, more = threading.Event(), []
        producer = threading.Thread(target=produce_until, args=(layout, stop, more))
        producer.start()
        try:
            conf = {
                "namespace": namespace,
                "jobs": ["market_pipeline"],
                "tables": tables,
                "retention_hours": 0,
                "allow_short_retention": True,
            }
            airflow_dags_test(platform, "lake_maintenance", conf)
        finally:
            stop.set()
            producer.join(300)
        assert driver.poll() is None, "the stream died during maintenance"
        total += sum(more)
        send_sentinel(platform, layout, START_MS + 24 * 3600 * 1000)
        wait_for(lambda: rows(spark, layout, "trades_enriched") >= total, 600, "silver")
    finally:
        os.killpg(driver.pid, signal.SIGTERM)
        driver.wait(120)

    results = maintenance_results(platform, f"market_pipeline@{namespace}")
    assert {(t, a) for t, a, *_ in results} == {
        (t, a) for t in tables for a in ("optimize", "vacuum")
    }
    assert all(status == "done" for _, _, status, *_ in results), results
    result = {(t, a): r for t, a, _, r, *_ in results}
    bronze_optimize = result["bronze_trades", "optimize"]
    assert bronze_optimize["files_removed"] > bronze_optimize["files_added"] >= 1
    vacuum = result["bronze_trades", "vacuum"]
    assert vacuum["files_deleted"] >= bronze_optimize["files_removed"], vacuum
    optimized = last_version(spark, layout, "bronze_trades", "OPTIMIZE")
    assert vacuum["readers"]["trades_enrichment"] >= optimized, vacuum
    # The stream committed to bronze while the maintenance ran (between its operations, as
    # the writer lock orders them), and after the VACUUM.
    began = min(started for *_, started, _ in results).timestamp()
    ended = max(finished for *_, finished in results).timestamp()
    history = delta_history(spark, layout.table("bronze_trades"))
    writes = history[history["operation"] == "WRITE"]
    vacuum_end = history[history["operation"] == "VACUUM END"]["version"].max()
    assert writes["at"].between(began, ended).any(), (began, ended, history)
    assert (writes["version"] > vacuum_end).any(), history

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
    assert check_live_bars(platform, layout, check_silver(spark, layout, total)) > 0
