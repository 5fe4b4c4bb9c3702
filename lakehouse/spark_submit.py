"""Spark applications submitted through the apache-spark provider's SparkSubmitHook.

The hook turns the Airflow connection (`spark_default`: its master is `local[*]` or the
standalone cluster) into a spark-submit command line; the platform's Spark configuration
(jars, Delta, S3A, RocksDB) is the same the in-process session factory uses.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
from pathlib import Path

from lakehouse.settings import Settings

DEFAULT_CONN_ID = "spark_default"


def submit_environment(settings: Settings) -> dict[str, str]:
    """What spark-submit's JVM needs in its environment besides the launcher's. The driver's
    UI binds to SPARK_LOCAL_IP and to every interface without it: under spark-submit the JVM
    starts before build_spark_session could set it (spark.driver.bindAddress covers only
    the RPC endpoint and the block manager)."""
    return {"SPARK_LOCAL_IP": settings.bind_host}


def submit_hook(settings: Settings, name: str, args: list[str], conn_id: str = DEFAULT_CONN_ID):
    from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

    from spark.session import CREDENTIAL_KEYS, spark_conf

    conf = spark_conf(settings)
    jars = conf.pop("spark.jars")
    # On the spark-submit command line they would show in `ps`; every application builds
    # its session with build_spark_session, which sets them from the settings in the driver.
    for key in CREDENTIAL_KEYS:
        conf.pop(key)
    return SparkSubmitHook(
        conn_id=conn_id,
        conf=conf,
        jars=jars,
        name=name,
        driver_memory=settings.spark_driver_memory,
        application_args=args,
        env_vars=submit_environment(settings),
        verbose=False,
    )


def application(module: str) -> str:
    """The file spark-submit runs for a module of this project."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ValueError(f"no module {module}")
    return spec.origin


def command(settings: Settings, module: str, name: str, args: list[str]) -> list[str]:
    """The spark-submit command line for a detached driver (streams outlive their task)."""
    return submit_hook(settings, name, args)._build_spark_submit_command(application(module))


class SparkApplicationFailed(RuntimeError):
    pass


def run(settings: Settings, module: str, name: str, args: list[str]) -> None:
    """Run a batch application to completion; its output goes to the log (the task's)."""
    from airflow.providers.common.compat.sdk import AirflowException

    try:
        submit_hook(settings, name, args).submit(application(module))
    except AirflowException as error:
        raise SparkApplicationFailed(f"{name} failed: {error}; see its output above") from None


def run_with_report(settings: Settings, module: str, name: str, args: list[str]) -> dict:
    """Run an application that takes `--report-file` and return the JSON it wrote there."""
    with tempfile.TemporaryDirectory() as folder:
        report_file = Path(folder) / "report.json"
        run(settings, module, name, [*args, "--report-file", str(report_file)])
        return json.loads(report_file.read_text())
