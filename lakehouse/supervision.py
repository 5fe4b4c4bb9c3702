"""Supervision of the long-running Spark drivers, Airflow's side: is it alive, is it
healthy, start or stop it.

All state lives in Postgres, so Airflow tasks, the CLI and the drivers agree on it no matter
which task started which driver. A driver is alive while it holds its advisory lock, and
stalled when its queries stop writing heartbeats (the driver's side: lakehouse/drivers.py).

`decide` is the whole policy as a pure function; `supervise` gathers the state, acts on
the decision and returns it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import psycopg

from lakehouse import spark_submit
from lakehouse.drivers import connect, host_name, lock_holder
from lakehouse.kit import StreamJob
from lakehouse.layout import check_namespace
from lakehouse.settings import Settings

log = logging.getLogger(__name__)


DRIVER_MODULE = "spark.driver"  # runs any job's queries (spark/driver.py)


def driver_args(job: StreamJob, namespace: str = "") -> list[str]:
    """The driver's arguments. Its pipelines' declared parameters are not repeated here: the
    driver reads them from the registry (spark.driver.parse_params)."""
    return ["--job", job.name, *(["--namespace", namespace] if namespace else [])]


class SupervisionError(RuntimeError):
    """The supervisor cannot bring the job to its desired state; the task must fail."""


# ---- the policy (pure) ------------------------------------------------------------


class Action(StrEnum):
    HEALTHY = "healthy"
    START = "start"
    RESTART_STALLED = "restart-stalled"
    WAIT_BACKOFF = "wait-backoff"
    GIVE_UP = "give-up"
    STOP = "stop"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Policy:
    stall_after_s: float = 300.0  # longer than the slowest step of a batch (batch_heartbeat)
    max_restarts: int = 5  # consecutive starts without a stable run
    backoff_base_s: float = 30.0
    backoff_max_s: float = 600.0
    stable_after_s: float = 600.0  # healthy this long: the restart count starts over

    def backoff_s(self, restarts: int) -> float:
        if restarts <= 0:
            return 0.0
        return min(self.backoff_base_s * 2 ** (restarts - 1), self.backoff_max_s)


@dataclass(frozen=True)
class DriverState:
    desired: str
    alive: bool
    started_at: datetime | None
    oldest_heartbeat: datetime | None  # the least recent of the job's queries
    restarts: int
    last_start_at: datetime | None
    # The job's queries committed batches after the driver's last start.
    committed_since_start: bool = False


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    reset_restarts: bool = False  # ran long enough: earlier crashes no longer count


def decide(state: DriverState, now: datetime, policy: Policy) -> Decision:
    if state.desired == "stopped":
        if state.alive:
            return Decision(Action.STOP, "desired state is stopped")
        return Decision(Action.STOPPED, "stopped on request")
    if state.alive:
        seen = max(t for t in (state.oldest_heartbeat, state.started_at, state.last_start_at) if t)
        silent_s = (now - seen).total_seconds()
        if silent_s <= policy.stall_after_s:
            stable = state.restarts > 0 and (
                state.last_start_at is None
                or (now - state.last_start_at).total_seconds() > policy.stable_after_s
            )
            return Decision(Action.HEALTHY, f"last heard of {silent_s:.0f} s ago", stable)
        if state.restarts >= policy.max_restarts:
            return Decision(
                Action.GIVE_UP, f"stalled {silent_s:.0f} s after {state.restarts} restarts"
            )
        return Decision(Action.RESTART_STALLED, f"no progress or idle event for {silent_s:.0f} s")
    if state.committed_since_start:
        # It had recovered: this crash is a new one, not another failed start.
        return Decision(
            Action.START, "died after committing batches: restarting without backoff", True
        )
    if state.restarts >= policy.max_restarts:
        return Decision(
            Action.GIVE_UP,
            f"not running after {state.restarts} starts; fix the cause (see its log), "
            "then start it from the stream_control DAG",
        )
    wait_s = policy.backoff_s(state.restarts)
    if state.last_start_at and (now - state.last_start_at).total_seconds() < wait_s:
        return Decision(
            Action.WAIT_BACKOFF, f"not running; next start after {wait_s:.0f} s backoff"
        )
    return Decision(Action.START, "not running" if state.last_start_at else "never started")


# ---- reading state and acting -----------------------------------------------------


def read_state(conn: psycopg.Connection, job: StreamJob, job_key: str) -> DriverState:
    conn.execute(
        "INSERT INTO stream_drivers (job_key) VALUES (%s) ON CONFLICT DO NOTHING", (job_key,)
    )
    desired, started_at, restarts, last_start_at, batches_at_start = conn.execute(
        "SELECT desired, started_at, restarts, last_start_at, batches_at_start"
        " FROM stream_drivers WHERE job_key = %s",
        (job_key,),
    ).fetchone()
    beats = dict(
        conn.execute(
            "SELECT query_name, last_event_at FROM stream_heartbeat WHERE job_key = %s",
            (job_key,),
        ).fetchall()
    )
    # A query that has not reported since this driver started counts from the start.
    per_query = [
        beats[q] if q in beats and started_at and beats[q] >= started_at else None
        for q in job.queries
    ]
    oldest = None if None in per_query else min(per_query)
    return DriverState(
        desired=desired,
        alive=lock_holder(conn, job_key) is not None,
        started_at=started_at,
        oldest_heartbeat=oldest,
        restarts=restarts,
        last_start_at=last_start_at,
        committed_since_start=(
            batches_at_start is not None and committed_batches(conn, job_key) > batches_at_start
        ),
    )


def committed_batches(conn: psycopg.Connection, job_key: str) -> int:
    """Batches the job's queries have committed, by their heartbeats (batch ids count up
    from 0 per checkpoint)."""
    (count,) = conn.execute(
        "SELECT coalesce(sum(last_batch_id + 1), 0) FROM stream_heartbeat WHERE job_key = %s",
        (job_key,),
    ).fetchone()
    return int(count)


def offsets_lost_since(
    conn: psycopg.Connection, job: StreamJob, started_at: datetime | None
) -> dict[str, tuple[int, str]]:
    """Per query of the job: the Kafka offsets its batches skipped since `started_at` (only
    counted when the platform skips lost offsets rather than failing), and where."""
    if started_at is None:
        return {}
    rows = conn.execute(
        """SELECT query_name, sum(kafka_offsets_lost),
                  string_agg(kafka_offsets_lost_by_partition::text, ' ' ORDER BY batch_id)
           FROM stream_progress
           WHERE query_name = ANY(%s) AND batch_time >= %s AND kafka_offsets_lost > 0
           GROUP BY query_name""",
        (list(job.queries), started_at),
    ).fetchall()
    return {query: (int(count), where) for query, count, where in rows}


def driver_log(settings: Settings, job_key: str) -> Path:
    return settings.logs_dir / "streams" / f"{job_key.replace('@', '__')}.log"


def driver_environment(settings: Settings) -> dict[str, str]:
    """The launcher's environment and spark-submit's own (`submit_environment`), plus the
    settings that decide which job hosts which pipeline: the driver must find the job it is
    given in the registry it loads."""
    flag = "true" if settings.streams_in_one_driver else "false"
    return {
        **os.environ,
        **spark_submit.submit_environment(settings),
        "LAKEHOUSE_STREAMS_IN_ONE_DRIVER": flag,
    }


def launch(settings: Settings, job: StreamJob, namespace: str, timeout_s: float = 180.0) -> int:
    """Start the driver detached (it outlives the task) and wait until it holds its lock."""
    job_key = job.key(namespace)
    command = spark_submit.command(settings, DRIVER_MODULE, job_key, driver_args(job, namespace))
    path = driver_log(settings, job_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with connect(settings) as conn:
        conn.execute(
            """UPDATE stream_drivers SET restarts = restarts + 1, last_start_at = now(),
               batches_at_start = %s, updated_at = now() WHERE job_key = %s""",
            (committed_batches(conn, job_key), job_key),
        )
        with path.open("ab") as out:
            out.write(f"\n==== {datetime.now(UTC).isoformat()} starting {job_key}\n".encode())
            out.flush()
            process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: killed as one
                env=driver_environment(settings),
            )
        log.info("launched %s (spark-submit pid %d), log %s", job_key, process.pid, path)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if lock_holder(conn, job_key) is not None:
                log.info("%s is running", job_key)
                return process.pid
            if process.poll() is not None:
                raise SupervisionError(
                    f"{job_key} exited with code {process.returncode} before it started; "
                    f"last lines of {path}:\n{_tail(path)}"
                )
            time.sleep(1)
    os.killpg(process.pid, signal.SIGKILL)
    raise SupervisionError(f"{job_key} did not start within {timeout_s:.0f} s; see {path}")


def stop(settings: Settings, job_key: str, timeout_s: float = 90.0, *, hard: bool = False) -> None:
    """SIGTERM (the driver stops its queries between micro-batches), SIGKILL if it hangs."""
    with connect(settings) as conn:
        if lock_holder(conn, job_key) is None:
            return
        pid, pgid, host = conn.execute(
            "SELECT pid, pgid, host FROM stream_drivers WHERE job_key = %s", (job_key,)
        ).fetchone()
        if host != host_name():
            raise SupervisionError(f"{job_key} runs on {host}, not here: stop it on that host")
        if not hard:
            _signal(pid, signal.SIGTERM)
            if _wait_until_released(conn, job_key, timeout_s):
                return
            log.warning(
                "%s did not stop in %.0f s: killing process group %s", job_key, timeout_s, pgid
            )
        _signal(pgid, signal.SIGKILL, group=True)
        if not _wait_until_released(conn, job_key, 30):
            raise SupervisionError(f"{job_key} still holds its lock after SIGKILL")


def _wait_until_released(conn: psycopg.Connection, job_key: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while lock_holder(conn, job_key) is not None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)
    return True


def stop_running_drivers(settings: Settings) -> list[str]:
    """Stop every driver that holds its lock (platform shutdown); their desired state stays,
    so the supervisor starts them again after the next `up`."""
    try:
        conn = connect(settings)
    except psycopg.OperationalError:
        return []  # Postgres is down: no driver can be holding a lock
    with conn:
        keys = [row[0] for row in conn.execute("SELECT job_key FROM stream_drivers").fetchall()]
        running = [key for key in keys if lock_holder(conn, key) is not None]
    for job_key in running:
        stop(settings, job_key)
    return running


def set_desired(settings: Settings, job_key: str, desired: str) -> None:
    """Record what the operator wants; an explicit start also forgets past restarts."""
    with connect(settings) as conn:
        conn.execute(
            """INSERT INTO stream_drivers (job_key, desired) VALUES (%(job)s, %(desired)s)
               ON CONFLICT (job_key) DO UPDATE SET desired = EXCLUDED.desired,
                   restarts = CASE WHEN EXCLUDED.desired = 'running' THEN 0
                                   ELSE stream_drivers.restarts END,
                   updated_at = now()""",
            {"job": job_key, "desired": desired},
        )


def supervise(
    settings: Settings,
    job: StreamJob,
    namespace: str = "",
    policy: Policy = Policy(),
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Decision:
    """One supervision cycle for one job: read its state, act, say what was done."""
    job_key = job.key(check_namespace(namespace))
    with connect(settings) as conn:
        state = read_state(conn, job, job_key)
        decision = decide(state, now(), policy)
        if decision.reset_restarts:
            conn.execute("UPDATE stream_drivers SET restarts = 0 WHERE job_key = %s", (job_key,))
        lost = offsets_lost_since(conn, job, state.started_at)
    log.info("%s: %s (%s)", job_key, decision.action, decision.reason)
    for query, (count, where) in lost.items():
        log.warning(
            "%s: %s skipped %d Kafka offsets that retention deleted before it read them "
            "since this driver started (%s)",
            job_key,
            query,
            count,
            where,
        )
    if decision.action is Action.GIVE_UP:
        raise SupervisionError(f"{job_key}: {decision.reason}")
    if decision.action is Action.STOP:
        stop(settings, job_key)
    elif decision.action is Action.RESTART_STALLED:
        stop(settings, job_key, hard=True)
        launch(settings, job, namespace)
    elif decision.action is Action.START:
        launch(settings, job, namespace)
    return decision


def _signal(pid: int | None, signum: int, *, group: bool = False) -> None:
    if not pid:
        return
    with suppress(ProcessLookupError):
        (os.killpg if group else os.kill)(pid, signum)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def paused(settings: Settings, job: StreamJob, namespace: str) -> Iterator[None]:
    """The job's driver stopped (and not restarted by the supervisor) for the block, then
    back in the state the operator wanted; for work that must own the job's tables."""
    job_key = job.key(namespace)
    with connect(settings) as conn:
        row = conn.execute(
            "SELECT desired FROM stream_drivers WHERE job_key = %s", (job_key,)
        ).fetchone()
    desired = row[0] if row else "stopped"
    set_desired(settings, job_key, "stopped")
    try:
        stop(settings, job_key)
        yield
    finally:
        set_desired(settings, job_key, desired)
        if desired == "running":
            launch(settings, job, namespace)


def control(settings: Settings, job: StreamJob, namespace: str, action: str) -> str:
    """An operator's start / stop / restart; returns what was done."""
    if action not in ("start", "stop", "restart"):
        raise ValueError(f"unknown action {action!r}: start, stop or restart")
    job_key = job.key(check_namespace(namespace))
    if action in ("stop", "restart"):
        set_desired(settings, job_key, "stopped")
        stop(settings, job_key)
        if action == "stop":
            return f"{job_key} stopped"
    set_desired(settings, job_key, "running")
    with connect(settings) as conn:
        if lock_holder(conn, job_key) is not None:
            return f"{job_key} is already running"
    launch(settings, job, namespace)
    return f"{job_key} started"
