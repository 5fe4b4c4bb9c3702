"""Shared fixtures: one real platform for the whole session, on its own home and ports.

The test platform lives under .lakehouse-test with every port shifted by TEST_PORT_SHIFT,
so `make test` never touches a platform started by `make up`. It is started once through
the real CLI (`lakehouse up`), reused when already running, and stopped by the lifecycle
test at the end (or by the session teardown if that test did not run).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from control.platform import side_platform_env
from lakehouse.settings import PROJECT_ROOT, Settings, load_settings

TEST_HOME = PROJECT_ROOT / ".lakehouse-test"
# CI or a second checkout can move its test platform elsewhere with LAKEHOUSE_TEST_PORT_SHIFT.
TEST_PORT_SHIFT = int(os.environ.get("LAKEHOUSE_TEST_PORT_SHIFT", "100"))
LAKEHOUSE_CLI = str(Path(sys.executable).parent / "lakehouse")
# Every service the test platform runs (`lakehouse up --no-demo --spark-cluster`).
PLATFORM_SERVICES = (
    "postgres",
    "s3",
    "kafka",
    "mongo",
    "spark-master",
    "spark-worker",
    "airflow",
    "dashboard",
)
TEST_ENV = side_platform_env(TEST_HOME, TEST_PORT_SHIFT)
# py4j logs at INFO from __del__ at interpreter exit, after pytest closed the streams.
logging.getLogger("py4j").setLevel(logging.WARNING)
# Everything in this process (fixtures, Spark, clients) sees the test platform.
os.environ.update(TEST_ENV)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600):
    return subprocess.run(
        [LAKEHOUSE_CLI, *args],
        env=env or TEST_ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=PROJECT_ROOT,
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The lifecycle test stops the shared platform, so it runs last.
    items.sort(key=lambda item: item.get_closest_marker("lifecycle") is not None)


@pytest.fixture(scope="session")
def platform() -> Settings:
    """The running test platform (Postgres, S3, Kafka, Spark cluster, Airflow, dashboard)."""
    result = run_cli("up", "--no-demo", "--spark-cluster")
    if result.returncode != 0:
        pytest.fail(f"`lakehouse up` failed:\n{result.stdout}\n{result.stderr}")
    yield load_settings()
    if os.environ.get("LAKEHOUSE_TEST_KEEP") != "1":
        run_cli("down")


@pytest.fixture(scope="session")
def spark(platform: Settings):
    """A local Spark session on the test platform (one per test session: JVM start is slow)."""
    from spark.session import build_spark_session

    session = build_spark_session("tests", platform, master="local[2]")
    yield session
    session.stop()


@pytest.fixture
def layout(platform: Settings):
    """Fresh topics, lake prefix, checkpoints and serving schema for one market-pipeline
    test: an isolated namespace."""
    return isolated_layout(platform, "market")


def isolated_layout(
    settings: Settings, pipeline: str, prefix: str = "t", registry=None, partitions: int = 3
):
    """A new namespace with the pipeline's topics created (3 partitions each by default)."""
    import uuid

    from kafka import KafkaAdminClient

    from lakehouse.layout import Layout

    layout = Layout(settings, prefix + uuid.uuid4().hex[:10], registry)
    topics = layout.registry.pipeline(pipeline).topics
    if not topics:
        return layout
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        admin.create_topics({layout.topic(t.name): {"num_partitions": partitions} for t in topics})
    finally:
        admin.close()
    return layout


def rest_of_output(process: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """What a text-mode process with piped stdout and stderr still writes until it exits.
    Unlike Popen.communicate, which reads the raw pipes, this reads through the file
    objects, so nothing an earlier readline() buffered is lost."""
    import threading

    output: dict[str, str] = {}
    readers = [
        threading.Thread(target=lambda n=name, s=stream: output.__setitem__(n, s.read()))
        for name, stream in (("stdout", process.stdout), ("stderr", process.stderr))
    ]
    for reader in readers:
        reader.start()
    process.wait(timeout)
    for reader in readers:
        reader.join(timeout)
    return output.get("stdout", ""), output.get("stderr", "")


def airflow_dags_test(
    settings: Settings,
    dag_id: str,
    conf: dict,
    timeout: float = 900,
    env: dict[str, str] | None = None,
):
    """One real DAG run through Airflow's own `airflow dags test`, on the test platform
    (`env`: variables added to the Airflow service's environment)."""
    import json

    from infra.airflow import AirflowService

    result = subprocess.run(
        [str(settings.venv_bin / "airflow"), "dags", "test", dag_id, "--conf", json.dumps(conf)],
        env={**AirflowService(settings).environment(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=PROJECT_ROOT,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"airflow dags test {dag_id} failed:\n{output[-8000:]}"
    # `dags test` can exit 0 although a task failed: the run's final state is in its log.
    assert "DagRun Finished" in output and "state=success" in output, output[-8000:]
    return output
