"""Airflow supervises the market pipeline: real DAG runs (`airflow dags test`), a real driver
submitted through the apache-spark provider, real Kafka, S3 and Postgres.

The supervised driver is killed (SIGKILL) in the middle of a bronze micro-batch and later
frozen (SIGSTOP, a hung driver); each time one supervisor cycle brings it back, the restart
reruns the interrupted batch from its checkpoint, and the lake's counts stay exact.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import psycopg
import pytest

from lakehouse import drivers
from lakehouse.registry import load_registry
from spark.checkpoints import batch_in_flight
from tests.conftest import airflow_dags_test
from tests.market import (
    START_MS,
    check_live_bars,
    check_silver,
    produce,
    recorded_progress,
    rows,
    send_sentinel,
    table,
    wait_for,
)

pytestmark = [pytest.mark.services, pytest.mark.spark, pytest.mark.slow]

JOB = load_registry().job("market_pipeline")


def running(settings, job_key: str) -> bool:
    with drivers.connect(settings) as conn:
        return drivers.lock_holder(conn, job_key) is not None


def driver_record(settings, job_key: str, column: str) -> int:
    with psycopg.connect(settings.postgres_dsn()) as conn:
        return conn.execute(
            f"SELECT {column} FROM stream_drivers WHERE job_key = %s", (job_key,)
        ).fetchone()[0]


def driver_pid(settings, job_key: str) -> int:
    return driver_record(settings, job_key, "pid")


def bronze_batch_in_flight(layout) -> bool:
    return batch_in_flight(Path(layout.checkpoint("market_bronze")))


def test_supervisor_restarts_killed_and_hung_drivers_without_loss(spark, platform, layout):
    namespace = layout.namespace
    job_key = JOB.key(namespace)

    def cycle(**params) -> str:
        conf = {"namespace": namespace, "jobs": [JOB.name], "backoff_base_s": 0, **params}
        return airflow_dags_test(platform, "stream_supervisor", conf)

    first = produce(layout, count=4000, seed=11, start_ms=START_MS)
    cycle()
    assert running(platform, job_key), "the first supervisor cycle did not start the driver"
    wait_for(
        lambda: rows(spark, layout, "bronze_trades") == first["trades"], 600, "bronze to catch up"
    )

    # Bronze's rows are in Delta before its batch ends: wait for the batch's progress too.
    wait_for(lambda: recorded_progress(platform, layout, "market_bronze")[0] >= 1, 120, "a batch")

    # 1. A driver killed mid-batch (bronze planned a batch and has not committed it): the
    # next cycle starts it again, and the restart reruns that batch from its checkpoint.
    killed = driver_pid(platform, job_key)
    second = produce(layout, count=3000, seed=12, start_ms=START_MS + 3_600_000)
    deadline = time.monotonic() + 300  # polled finely: a batch lasts a few seconds
    while not bronze_batch_in_flight(layout):
        assert time.monotonic() < deadline, "bronze planned no batch of the new records"
        time.sleep(0.1)
    os.kill(killed, signal.SIGKILL)
    assert bronze_batch_in_flight(layout), "the batch committed before the kill landed"
    wait_for(lambda: not running(platform, job_key), 60, "the killed driver's lock to go")
    cycle()
    assert running(platform, job_key), "one cycle after the kill the driver is not running"
    assert driver_pid(platform, job_key) != killed
    # It had committed batches since its start: a recovery, not a failed start. The restart
    # count starts over instead of growing the backoff (2 before this rule).
    assert driver_record(platform, job_key, "restarts") == 1
    total = first["trades"] + second["trades"]
    wait_for(lambda: rows(spark, layout, "bronze_trades") == total, 600, "bronze after restart")

    # 2. A hung driver (alive, holding its lock, silent): killed and replaced.
    hung = driver_pid(platform, job_key)
    os.kill(hung, signal.SIGSTOP)
    try:
        time.sleep(25)
        cycle(stall_after_s=20)
    finally:
        # Already gone when the supervisor did its job; resumed otherwise.
        with contextlib.suppress(ProcessLookupError):
            os.kill(hung, signal.SIGCONT)
    assert running(platform, job_key), "the stalled driver was not replaced"
    assert driver_pid(platform, job_key) != hung

    send_sentinel(platform, layout, START_MS + 24 * 3600 * 1000)
    wait_for(lambda: rows(spark, layout, "trades_enriched") >= total, 600, "silver")
    bronze = table(spark, layout, "bronze_trades")
    assert len(bronze) == total
    assert not bronze.duplicated(["kafka_topic", "kafka_partition", "kafka_offset"]).any()
    # The live bars too: the SIGKILLed batch was folded into Postgres once.
    assert check_live_bars(platform, layout, check_silver(spark, layout, total)) > 0

    # 3. Stopped from the UI's control DAG: the supervisor leaves it stopped.
    conf = {"job": JOB.name, "action": "stop", "namespace": namespace}
    airflow_dags_test(platform, "stream_control", conf)
    assert not running(platform, job_key)
    cycle()
    assert not running(platform, job_key), "the supervisor restarted a stream stopped on request"
