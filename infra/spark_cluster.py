"""A Spark standalone master and worker started from the pyspark wheel (`up --spark-cluster`).

This is a real multi-process cluster on loopback: jobs submitted to it run in executors
of the worker, exactly as they would on a cluster of machines.
"""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import pyspark

from infra.base import Service


def spark_home() -> str:
    """The Spark distribution inside the pyspark wheel (spark-class and spark-submit need it:
    their own lookup runs `python3` from PATH, which may not be this venv's)."""
    return str(Path(pyspark.__file__).parent)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status == 200
    except OSError:
        return False


class _SparkDaemon(Service):
    start_timeout_s = 60.0

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SPARK_HOME"] = spark_home()
        env["SPARK_LOG_DIR"] = str(self.settings.logs_dir)
        env["SPARK_LOCAL_IP"] = self.settings.bind_host
        env["SPARK_WORKER_DIR"] = str(self.settings.data_dir / "spark-worker")
        # The master's REST submission server (6066, not a setting) takes jobs from anyone
        # who can reach it, without authentication; drivers submit over the RPC port.
        env["SPARK_MASTER_OPTS"] = "-Dspark.master.rest.enabled=false"
        return env


class SparkMasterService(_SparkDaemon):
    name = "spark-master"

    def ports(self) -> dict[str, int]:
        return {
            "spark_master_port": self.settings.spark_master_port,
            "spark_master_ui_port": self.settings.spark_master_ui_port,
        }

    def url(self) -> str:
        return self.settings.spark_cluster_master

    def command(self) -> list[str]:
        s = self.settings
        return [
            str(s.venv_bin / "spark-class"),
            "org.apache.spark.deploy.master.Master",
            "--host",
            s.bind_host,
            "--port",
            str(s.spark_master_port),
            "--webui-port",
            str(s.spark_master_ui_port),
        ]

    def is_healthy(self) -> bool:
        ui = f"http://{self.settings.bind_host}:{self.settings.spark_master_ui_port}/json/"
        return _http_ok(ui)


class SparkWorkerService(_SparkDaemon):
    name = "spark-worker"

    def ports(self) -> dict[str, int]:
        return {"spark_worker_ui_port": self.settings.spark_worker_ui_port}

    def url(self) -> str:
        return f"http://{self.settings.bind_host}:{self.settings.spark_worker_ui_port}"

    def command(self) -> list[str]:
        s = self.settings
        return [
            str(s.venv_bin / "spark-class"),
            "org.apache.spark.deploy.worker.Worker",
            "--host",
            s.bind_host,
            "--webui-port",
            str(s.spark_worker_ui_port),
            "--cores",
            str(s.spark_worker_cores),
            "--memory",
            s.spark_worker_memory,
            s.spark_cluster_master,
        ]

    def is_healthy(self) -> bool:
        # Healthy once the master lists this worker as ALIVE.
        import json

        ui = f"http://{self.settings.bind_host}:{self.settings.spark_master_ui_port}/json/"
        try:
            with urllib.request.urlopen(ui, timeout=3) as response:
                state = json.load(response)
        except (OSError, ValueError):
            return False
        return any(worker.get("state") == "ALIVE" for worker in state.get("workers", []))
