"""The driver's side of supervision: the lock a streaming driver holds for its whole life
and the heartbeats its progress listener writes. Airflow's side (policy, launch, stop) is
lakehouse/supervision.py; both meet in Postgres:

- Each running driver holds a session-level advisory lock keyed by its job key. When the
  driver dies its socket closes and Postgres drops the lock, so "alive" never depends on a
  pid file or on the task that launched it, and a second driver cannot take the lock.
- `stream_drivers`: the desired state, the lock holder's pid and host, restart counts.
- `stream_heartbeat`: the last event per query (progress or idle).
The tables come from the migrations (lakehouse/migrations/), applied by `lakehouse up`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg

from lakehouse.settings import Settings

LOCK_CLASS = 0x4C48  # first key of every driver lock ("LH"); the second is the job key's hash
LOCK_CHECK_S = 3.0  # how often a driver makes sure it still holds its lock
EXIT_LOCK_LOST = 4

log = logging.getLogger(__name__)


class DriverAlreadyRunning(RuntimeError):
    pass


def lock_key(job_key: str) -> int:
    return zlib.crc32(job_key.encode()) & 0x7FFFFFFF


def host_name() -> str:
    return socket.gethostname()


def connect(settings: Settings) -> psycopg.Connection:
    # Keepalives: a driver on a dead host must not keep its lock for hours.
    return psycopg.connect(
        settings.postgres_dsn(),
        autocommit=True,
        connect_timeout=10,
        keepalives=1,
        keepalives_idle=10,
        keepalives_interval=5,
        keepalives_count=3,
    )


def lock_holder(conn: psycopg.Connection, job_key: str) -> int | None:
    """The Postgres backend pid holding the job's lock, or None when no driver runs."""
    row = conn.execute(
        """SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
           AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 2""",
        (LOCK_CLASS, lock_key(job_key)),
    ).fetchone()
    return row[0] if row else None


def exit_now(reason: str) -> None:
    """Leave at once, without running a single further line of the job: another driver may
    already be taking over its tables."""
    log.critical("%s: exiting now so that only one driver writes", reason)
    logging.shutdown()
    os._exit(EXIT_LOCK_LOST)


@contextmanager
def hold_driver_lock(
    settings: Settings,
    job_key: str,
    *,
    check_s: float = LOCK_CHECK_S,
    on_lost: Callable[[str], None] = exit_now,
) -> Iterator[None]:
    """Held by a driver for its whole life; raises DriverAlreadyRunning if another holds it.

    The lock lives as long as this Postgres session. When the session ends under the driver
    (Postgres restarted, the connection cut), the supervisor sees no holder and starts a new
    driver; so a watcher checks the session every `check_s` and calls `on_lost` (by default:
    exit at once) when it is gone."""
    conn = connect(settings)
    stop = threading.Event()
    try:
        (acquired,) = conn.execute(
            "SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, lock_key(job_key))
        ).fetchone()
        if not acquired:
            row = conn.execute(
                "SELECT pid, host FROM stream_drivers WHERE job_key = %s", (job_key,)
            ).fetchone()
            holder = f"pid {row[0]} on {row[1]}" if row else "another process"
            raise DriverAlreadyRunning(f"{job_key} is already running ({holder})")
        conn.execute(
            """INSERT INTO stream_drivers (job_key, pid, pgid, host, started_at)
               VALUES (%(job)s, %(pid)s, %(pgid)s, %(host)s, now())
               ON CONFLICT (job_key) DO UPDATE SET pid = EXCLUDED.pid, pgid = EXCLUDED.pgid,
                   host = EXCLUDED.host, started_at = now(), updated_at = now()""",
            {"job": job_key, "pid": os.getpid(), "pgid": os.getpgid(0), "host": host_name()},
        )
        watcher = threading.Thread(
            target=_watch_lock,
            args=(conn, job_key, check_s, stop, on_lost),
            name=f"lock-watch-{job_key}",
            daemon=True,
        )
        watcher.start()
        yield
    finally:
        stop.set()
        conn.close()  # closing the session releases the lock


def _watch_lock(
    conn: psycopg.Connection,
    job_key: str,
    check_s: float,
    stop: threading.Event,
    on_lost: Callable[[str], None],
) -> None:
    while not stop.wait(check_s):
        try:
            held = lock_holder(conn, job_key) == conn.info.backend_pid
        except psycopg.Error as error:
            if stop.is_set():
                return  # the driver is leaving and closed the session itself
            on_lost(f"{job_key} lost its lock's Postgres session ({error})".strip())
            return
        if not held:
            on_lost(f"{job_key} no longer holds its lock")
            return


def record_heartbeat(conn: psycopg.Connection, job_key: str, query: str, batch_id=None) -> None:
    conn.execute(
        """INSERT INTO stream_heartbeat (job_key, query_name, last_event_at, last_batch_id)
           VALUES (%s, %s, now(), %s)
           ON CONFLICT (job_key, query_name) DO UPDATE SET last_event_at = now(),
               last_batch_id = COALESCE(EXCLUDED.last_batch_id, stream_heartbeat.last_batch_id)""",
        (job_key, query, batch_id),
    )
