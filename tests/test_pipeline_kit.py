"""A pipeline is its own files plus one declaration: a small extra pipeline (pings, in
tests/kit_pipeline.py, with its own registry and migration) is picked up by the supervisor
DAG, the maintenance DAG, the serving sync DAG and the CLI, with no change to platform code.
Real Airflow runs (`airflow dags test`), a real driver through spark-submit, real Kafka, S3
and Postgres. The job filter keeps the market job out of this test's namespace."""

from __future__ import annotations

import json

import psycopg
import pytest
from kafka import KafkaProducer

from lakehouse import drivers
from lakehouse.layout import Layout
from lakehouse.settings import PROJECT_ROOT
from tests.conftest import TEST_ENV, airflow_dags_test, isolated_layout, run_cli
from tests.kit_pipeline import REGISTRY
from tests.market import START_MS, wait_for

pytestmark = [pytest.mark.services, pytest.mark.spark, pytest.mark.slow]

# Every process of the platform (DAG parsing, tasks, the driver) loads the test's registry.
KIT_ENV = {"LAKEHOUSE_REGISTRY": "tests.kit_pipeline:REGISTRY", "PYTHONPATH": str(PROJECT_ROOT)}
GOOD, BAD = 40, 3


def send_pings(settings, layout: Layout) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    topic = layout.topic("pings")
    for i in range(GOOD):
        ping = {"schema_version": 1, "ping_id": f"p{i}", "value": i, "event_timestamp": START_MS}
        producer.send(topic, json.dumps(ping).encode())
    producer.send(topic, b"not json")
    producer.send(topic, json.dumps({"schema_version": 1, "ping_id": "x", "value": 5}).encode())
    out_of_range = {"schema_version": 1, "ping_id": "y", "value": 5000, "event_timestamp": START_MS}
    producer.send(topic, json.dumps(out_of_range).encode())
    producer.flush()
    producer.close()


def lake_rows(spark, layout: Layout, table: str) -> int:
    try:
        return spark.read.format("delta").load(layout.table(table)).count()
    except Exception:  # the table appears with the driver's first commit
        return -1


def test_an_extra_pipeline_is_supervised_maintained_synced_and_listed(spark, platform):
    layout = isolated_layout(platform, "pings", prefix="kit", registry=REGISTRY)
    namespace, job_key = layout.namespace, layout.job_key("pings_job")
    send_pings(platform, layout)
    cli_env = {**TEST_ENV, **KIT_ENV}

    listed = run_cli("pipelines", env=cli_env)
    assert listed.returncode == 0 and "pings_job" in listed.stdout, listed.stdout + listed.stderr

    # The supervisor starts the extra job, and only it (the filter), on the namespace.
    conf = {"namespace": namespace, "jobs": ["pings_job"], "backoff_base_s": 0}
    output = airflow_dags_test(platform, "stream_supervisor", conf, env=KIT_ENV)
    assert "pings_job" in output and "market_pipeline is not among" in output
    wait_for(
        lambda: (
            (lake_rows(spark, layout, "bronze_pings"), lake_rows(spark, layout, "quarantine_pings"))
            == (GOOD, BAD)
        ),
        300,
        "the pings in bronze and quarantine",
    )
    quarantine = spark.read.format("delta").load(layout.table("quarantine_pings")).toPandas()
    assert sorted(quarantine["reason"]) == [
        "missing_event_timestamp",
        "unparseable_or_mistyped",
        "value_out_of_range",
    ]
    with drivers.connect(platform) as conn:
        assert drivers.lock_holder(conn, job_key) is not None
        assert drivers.lock_holder(conn, layout.job_key("market_pipeline")) is None

    # Maintenance is served inside the pings driver.
    conf = {"namespace": namespace, "jobs": ["pings_job"], "timeout_s": 300}
    airflow_dags_test(platform, "lake_maintenance", conf, env=KIT_ENV)
    with psycopg.connect(platform.postgres_dsn()) as conn:
        served = conn.execute(
            "SELECT table_name, action, status FROM maintenance_requests WHERE job_key = %s",
            (job_key,),
        ).fetchall()
    assert sorted(served) == [
        ("bronze_pings", "optimize", "done"),
        ("bronze_pings", "vacuum", "done"),
        ("quarantine_pings", "optimize", "done"),
        ("quarantine_pings", "vacuum", "done"),
    ]

    # The sync creates the pipeline's serving table from its own migration and fills it.
    conf = {"namespace": namespace, "pipelines": ["pings"]}
    airflow_dags_test(platform, "postgres_sync", conf, env=KIT_ENV)
    with psycopg.connect(platform.postgres_dsn()) as conn:
        served = conn.execute(f"SELECT count(*), sum(value) FROM {layout.serving_schema}.pings")
        assert served.fetchone() == (GOOD, sum(range(GOOD)))

    # And the CLI stops it.
    stopped = run_cli("stream", "stop", "pings_job", "--namespace", namespace, env=cli_env)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    with drivers.connect(platform) as conn:
        assert drivers.lock_holder(conn, job_key) is None
