"""Start, stop and inspect the embedded platform: the services in dependency order."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from infra.airflow import AirflowService
from infra.base import Service, ServiceError
from infra.dashboard import DashboardService
from infra.demo_feed import (
    ActivityDemoFeedService,
    CsvDemoFeedService,
    DemoFeedService,
    OrdersDemoFeedService,
)
from infra.kafka import KafkaService
from infra.mongo import MongoService
from infra.postgres import PostgresService
from infra.s3 import S3Service
from infra.spark_cluster import SparkMasterService, SparkWorkerService
from lakehouse.process import cores_used, port_bindable
from lakehouse.settings import Settings

Log = Callable[[str], None]

# Drivers of a side platform live for minutes on few cores: C2 compilation and G1's threads
# cost more CPU than they win back.
SIDE_PLATFORM_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def shifted_port_env(shift: int) -> dict[str, str]:
    """LAKEHOUSE_*_PORT variables for every port setting, moved by `shift`."""
    env = {}
    for name, field in Settings.model_fields.items():
        if name.endswith("_port") or name.endswith("_port_base"):
            env[f"LAKEHOUSE_{name.upper()}"] = str(field.default + shift)
    return env


def side_platform_env(home: Path, shift: int) -> dict[str, str]:
    """The environment of a second platform on this machine (the tests', the chaos run's):
    its own home and ports, small drivers, and Airflow's DAGs paused so that nothing starts
    the default streams on it. Everything else of the caller's environment is kept, except
    its LAKEHOUSE_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    env.update(shifted_port_env(shift))
    env["LAKEHOUSE_HOME"] = str(home)
    env["LAKEHOUSE_JARS_PATH"] = str(Settings().jars_dir)  # share the installed jars
    env["LAKEHOUSE_SPARK_DRIVER_MEMORY"] = "1g"
    env["LAKEHOUSE_SPARK_JAVA_OPTIONS"] = SIDE_PLATFORM_JAVA_OPTIONS
    # Small inputs need few state store and shuffle partitions.
    env["LAKEHOUSE_SPARK_SHUFFLE_PARTITIONS"] = "2"
    # Short runs that wait for commits: batches as often as they can keep up.
    env["LAKEHOUSE_STREAM_TRIGGER_OVERRIDE_S"] = "5"
    env["LAKEHOUSE_AIRFLOW_DAGS_PAUSED"] = "true"
    env["AIRFLOW_HOME"] = str(home / "airflow")
    # Its DAG files do not change while it runs: parse them at start, not every 30 s.
    env["LAKEHOUSE_AIRFLOW_DAG_PARSE_INTERVAL_S"] = "600"
    return env


class PlatformError(RuntimeError):
    """`up` failed; the message is for the user as it stands."""


def services(
    settings: Settings, *, spark_cluster: bool = False, demo: bool = True
) -> list[Service]:
    """All services in start order (each may depend on those before it)."""
    chosen: list[Service] = [
        PostgresService(settings),
        S3Service(settings),
        KafkaService(settings),
        MongoService(settings),
    ]
    if spark_cluster:
        chosen += [SparkMasterService(settings), SparkWorkerService(settings)]
    chosen += [AirflowService(settings), DashboardService(settings)]
    if demo:
        chosen.extend(
            (
                DemoFeedService(settings),
                ActivityDemoFeedService(settings),
                OrdersDemoFeedService(settings),
                CsvDemoFeedService(settings),
            )
        )
    return chosen


def all_services(settings: Settings) -> list[Service]:
    """Every service `down` and `status` look at, whether or not `up` chose it."""
    return services(settings, spark_cluster=True, demo=True)


def check_ports_free(service: Service) -> None:
    for setting, port in service.ports().items():
        if not port_bindable(service.settings.bind_host, port):
            variable = "LAKEHOUSE_" + setting.split("+")[0].upper()
            raise PlatformError(
                f"{service.name} cannot start: port {port} on {service.settings.bind_host} "
                f"is already in use; stop what holds it or set {variable} to a free port."
            )


def wait_healthy(service: Service, log: Log) -> None:
    deadline = time.monotonic() + service.start_timeout_s
    while time.monotonic() < deadline:
        if service.is_healthy():
            return
        if service.process.exited_early():
            raise PlatformError(f"{service.name} exited during start-up.")
        time.sleep(0.5)
    raise PlatformError(
        f"{service.name} did not become healthy within {service.start_timeout_s:.0f} s."
    )


@dataclass
class StartReport:
    started: list[str]
    already_running: list[str]
    seconds: float


def up(services_in_order: list[Service], log: Log = print) -> StartReport:
    """Start what is not running, in order; on failure stop what this call started."""
    begun = time.monotonic()
    started: list[Service] = []
    already: list[str] = []
    current: Service | None = None
    try:
        for service in services_in_order:
            current = service
            if service.process.process() is not None and service.is_healthy():
                already.append(service.name)
                service.after_start()
                continue
            service.process.stop(service.settings.service_stop_timeout_s)  # a wedged leftover
            check_ports_free(service)
            t0 = time.monotonic()
            log(f"starting {service.name}")
            service.prepare()
            service.process.start(
                service.command(), env=service.environment(), user=service.run_as_user()
            )
            started.append(service)
            wait_healthy(service, log)
            service.after_start()
            log(f"{service.name} healthy in {time.monotonic() - t0:.1f} s")
    except (PlatformError, ServiceError) as error:
        detail = ""
        if current is not None and current.process.log_file.exists():
            log_file = current.process.log_file
            detail = f"\nlast lines of {log_file}:\n{current.process.tail(20)}"
        for service in reversed(started):
            service.process.stop(service.settings.service_stop_timeout_s)
        raise PlatformError(f"{error}{detail}") from error
    return StartReport([s.name for s in started], already, time.monotonic() - begun)


# Stopped before the streaming drivers: nothing may restart a driver while `down` runs.
_SUPERVISING_SERVICES = ("dashboard", "airflow")


def down(services_in_order: list[Service], log: Log = print) -> list[str]:
    stopped = []
    streams_stopped = False
    for service in reversed(services_in_order):
        if not streams_stopped and service.name not in _SUPERVISING_SERVICES:
            # The drivers Airflow started run detached; they go before the services they use.
            from lakehouse.supervision import stop_running_drivers

            for job_key in stop_running_drivers(service.settings):
                log(f"stopped stream {job_key}")
                stopped.append(job_key)
            streams_stopped = True
        if service.process.stop(service.settings.service_stop_timeout_s):
            log(f"stopped {service.name}")
            stopped.append(service.name)
    return stopped


def status(services_in_order: list[Service], cpu_window_s: float = 1.0) -> list[dict]:
    """One row per service; `cpu_cores` is the mean its process tree used over a window of
    `cpu_window_s` (all services sampled in the same window)."""
    before = {s.name: s.process.cpu_seconds_by_pid() for s in services_in_order}
    started = time.monotonic()
    time.sleep(cpu_window_s)
    elapsed = time.monotonic() - started
    rows = []
    for service in services_in_order:
        pid = service.process.pid
        rows.append(
            {
                "service": service.name,
                "pid": pid,
                "running": pid is not None,
                "healthy": pid is not None and service.is_healthy(),
                "ports": list(service.ports().values()),
                "url": service.url(),
                "rss_mb": round(service.process.rss_bytes() / 2**20, 1),
                "cpu_cores": round(
                    cores_used(before[service.name], service.process.cpu_seconds_by_pid(), elapsed),
                    2,
                ),
                "log": str(service.process.log_file),
                "details": dict(service.extra_status()),
            }
        )
    return rows
