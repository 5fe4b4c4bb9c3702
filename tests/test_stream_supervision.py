"""Airflow supervises the market pipeline: real DAG runs (`airflow dags test`), a real driver
submitted through the apache-spark provider, real Kafka, S3 and Postgres.

The supervised driver is killed (SIGKILL) and later frozen (SIGSTOP, a hung driver); each
time one supervisor cycle brings it back, and the lake's counts stay exact.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import psycopg
import pytest

from lakehouse import drivers
from lakehouse.registry import load_registry
from tests.conftest import airflow_dags_test
from tests.market import START_MS, check_silver, produce, rows, send_sentinel, table, wait_for

pytestmark = [pytest.mark.services, pytest.mark.spark, pytest.mark.slow]

JOB = load_registry().job("market_pipeline")


def running(settings, job_key: str) -> bool:
    with drivers.connect(settings) as conn:
        return drivers.lock_holder(conn, job_key) is not None


def driver_pid(settings, job_key: str) -> int:
    with psycopg.connect(settings.postgres_dsn()) as conn:
        return conn.execute(
            "SELECT pid FROM stream_drivers WHERE job_key = %s", (job_key,)
        ).fetchone()[0]


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

    # 1. A dead driver: started again by the next cycle.
    killed = driver_pid(platform, job_key)
    os.kill(killed, signal.SIGKILL)
    wait_for(lambda: not running(platform, job_key), 60, "the killed driver's lock to go")
    second = produce(layout, count=3000, seed=12, start_ms=START_MS + 3_600_000)
    cycle()
    assert running(platform, job_key), "one cycle after the kill the driver is not running"
    assert driver_pid(platform, job_key) != killed
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
    check_silver(spark, layout, total)

    # 3. Stopped from the UI's control DAG: the supervisor leaves it stopped.
    conf = {"job": JOB.name, "action": "stop", "namespace": namespace}
    airflow_dags_test(platform, "stream_control", conf)
    assert not running(platform, job_key)
    cycle()
    assert not running(platform, job_key), "the supervisor restarted a stream stopped on request"
