"""Airflow 3: api-server, scheduler, dag-processor (and the triggerer when
settings.airflow_triggerer says so) under one supervised shell.

Why not `airflow standalone`: its scheduler and triggerer always start the task-log servers
on fixed ports 8793/8794 bound to every interface, which collide with any other Airflow on
the machine; the separate commands take `--skip-serve-logs` (logs are local files the
api-server reads directly). The shell exits as soon as any component does, taking the
others with it, so the supervisor sees a crash instead of a half-running Airflow.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import urllib.request
from pathlib import Path

from infra.base import Service, ServiceError
from infra.spark_cluster import spark_home
from lakehouse.settings import PROJECT_ROOT, Settings

_COMPONENTS = ["api-server", "scheduler --skip-serve-logs", "dag-processor"]
_TRIGGERER = "triggerer --skip-serve-logs"


class AirflowService(Service):
    name = "airflow"
    start_timeout_s = 120.0

    def ports(self) -> dict[str, int]:
        return {"airflow_port": self.settings.airflow_port}

    def url(self) -> str:
        return self.settings.airflow_url

    @property
    def airflow_home(self) -> Path:
        return self.settings.home / "airflow"

    @property
    def _passwords_file(self) -> Path:
        return self.airflow_home / "simple_auth_manager_passwords.json"

    def environment(self) -> dict[str, str]:
        s = self.settings
        env = dict(os.environ)
        # DAG code calls load_settings(): hand it exactly these settings, overrides included.
        for field, value in s.model_dump().items():
            if value is not None:
                env[f"LAKEHOUSE_{field.upper()}"] = str(value)
        env.update(
            {
                "AIRFLOW_HOME": str(self.airflow_home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(s.airflow_dags_paused),
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(s.airflow_parallelism),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": s.postgres_sqlalchemy_url(s.airflow_db),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "2",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_MAX_OVERFLOW": "5",
                "AIRFLOW__API__HOST": s.bind_host,
                "AIRFLOW__API__PORT": str(s.airflow_port),
                # Workers reach the execution API through this; the default assumes :8080.
                "AIRFLOW__API__BASE_URL": s.airflow_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(
                    s.airflow_dag_parse_interval_s
                ),
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{s.airflow_admin_user}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self._passwords_file),
                # spark-submit (apache-spark provider) needs both the venv on PATH and the
                # Spark distribution inside the pyspark wheel.
                "PATH": os.pathsep.join([str(s.venv_bin), env.get("PATH", os.defpath)]),
                "SPARK_HOME": str(spark_home()),
                "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps(
                    {"conn_type": "spark", "host": s.spark_master}
                ),
            }
        )
        return env

    def prepare(self) -> None:
        s = self.settings
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        # Rewritten on every start so a rotated password in credentials.env takes effect.
        fd = os.open(self._passwords_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({s.airflow_admin_user: s.airflow_admin_password}, handle)
        os.chmod(self._passwords_file, 0o600)
        try:
            result = subprocess.run(
                [str(s.venv_bin / "airflow"), "db", "migrate"],
                env=self.environment(),
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise ServiceError("`airflow db migrate` did not finish within 10 minutes.") from error
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            raise ServiceError(
                f"`airflow db migrate` failed (is Postgres up on {s.postgres_host}:"
                f"{s.postgres_port}?):\n{tail}"
            )

    def components(self) -> list[str]:
        return [*_COMPONENTS, *([_TRIGGERER] if self.settings.airflow_triggerer else [])]

    def command(self) -> list[str]:
        """The components, each started again 5 s after it exits: the scheduler and
        the API server exit when their metadata database goes away (a Postgres restart,
        measured by the chaos run), and without them no DAG supervises the streams.
        `stop` signals the whole process group, loops included."""
        airflow = shlex.quote(str(self.settings.venv_bin / "airflow"))
        loops = " ".join(
            f"while true; do {airflow} {component}; "
            f'echo "airflow {component.split()[0]} exited ($?); starting it again in 5 s"; '
            "sleep 5; done &"
            for component in self.components()
        )
        return ["bash", "-c", f"{loops} wait"]

    def is_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"{self.settings.airflow_url}/api/v2/monitor/health", timeout=5
            ) as response:
                health = json.load(response)
        except (OSError, ValueError):
            return False
        parts = ["metadatabase", "scheduler", "dag_processor"]
        if self.settings.airflow_triggerer:
            parts.append("triggerer")
        return all((health.get(part) or {}).get("status") == "healthy" for part in parts)


def airflow_cli(settings: Settings, *arguments: str, timeout_s: float = 300) -> str:
    """Run the venv's `airflow` command against the platform's Airflow; returns its stdout.
    A failure raises ServiceError with the command's last line of output."""
    result = subprocess.run(
        [str(settings.venv_bin / "airflow"), *arguments],
        env=AirflowService(settings).environment(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:]
        raise ServiceError(f"airflow {' '.join(arguments)} failed: {last}")
    return result.stdout
