"""Lake maintenance requests: OPTIMIZE and VACUUM run by the table's own writer.

The single-writer rule (docs/architecture.md): Delta on S3 is only safe with one process
committing to a table. So maintenance never runs beside the stream: Airflow files a request
in Postgres, and the streaming driver that owns the table runs it in a worker thread that
holds the same in-process lock as the query's foreachBatch writes (spark/maintenance.py).
Commits to a table therefore come from one process, one at a time. Requests for a job whose
driver is not running wait; the requester gives up after its timeout with a clear error.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb

from lakehouse.layout import check_namespace
from lakehouse.settings import Settings

log = logging.getLogger(__name__)

ACTIONS = ("optimize", "vacuum")


class MaintenanceError(RuntimeError):
    pass


@dataclass(frozen=True)
class Request:
    id: int
    table_name: str
    action: str
    params: dict


def submit(settings: Settings, job_key: str, table: str, action: str, **params) -> int:
    if action not in ACTIONS:
        raise ValueError(f"unknown maintenance action {action!r}; one of {ACTIONS}")
    with psycopg.connect(settings.postgres_dsn(), autocommit=True) as conn:
        (request_id,) = conn.execute(
            """INSERT INTO maintenance_requests (job_key, table_name, action, params)
               VALUES (%s, %s, %s, %s) RETURNING id""",
            (job_key, table, action, Jsonb(params)),
        ).fetchone()
    return request_id


def wait(settings: Settings, ids: list[int], timeout_s: float, poll_s: float = 2.0) -> list[dict]:
    """Wait until every request is done; raise on the first failure or at the timeout."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(settings.postgres_dsn(), autocommit=True) as conn:
        while True:
            rows = conn.execute(
                """SELECT id, table_name, action, status, result, error
                   FROM maintenance_requests WHERE id = ANY(%s) ORDER BY id""",
                (ids,),
            ).fetchall()
            failed = [r for r in rows if r[3] == "failed"]
            if failed:
                _, table, action, _, _, error = failed[0]
                raise MaintenanceError(f"{action} of {table} failed: {error}")
            if all(r[3] == "done" for r in rows):
                return [{"table": r[1], "action": r[2], **(r[4] or {})} for r in rows]
            if time.monotonic() > deadline:
                pending = [f"{r[2]} {r[1]} ({r[3]})" for r in rows if r[3] != "done"]
                raise MaintenanceError(
                    f"not done after {timeout_s:.0f} s: {', '.join(pending)}. Is the stream "
                    "that owns the table running? (stream_supervisor DAG, `lakehouse status`)"
                )
            time.sleep(poll_s)


# ---- the driver's side ------------------------------------------------------------


def requeue_interrupted(conn: psycopg.Connection, job_key: str) -> None:
    """A driver that died mid-request left it 'running': the new driver (which holds the
    job's lock, so nobody else can be running it) takes it up again."""
    conn.execute(
        "UPDATE maintenance_requests SET status = 'pending' WHERE job_key = %s"
        " AND status = 'running'",
        (job_key,),
    )


def claim_next(conn: psycopg.Connection, job_key: str) -> Request | None:
    row = conn.execute(
        """UPDATE maintenance_requests SET status = 'running', started_at = now()
           WHERE id = (SELECT id FROM maintenance_requests
                       WHERE job_key = %s AND status = 'pending'
                       ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
           RETURNING id, table_name, action, params""",
        (job_key,),
    ).fetchone()
    return Request(*row) if row else None


def finish(conn: psycopg.Connection, request_id: int, result: dict | None, error: str | None):
    conn.execute(
        """UPDATE maintenance_requests SET status = %s, finished_at = now(), result = %s,
           error = %s WHERE id = %s""",
        (
            "failed" if error else "done",
            Jsonb(json.loads(json.dumps(result, default=str))) if result else None,
            error,
            request_id,
        ),
    )


def maintain_job(
    settings: Settings,
    job,
    namespace: str,
    *,
    retention_hours: float,
    closed_after_hours: float,
    timeout_s: float,
    tables: list[str] | None = None,
    allow_short_retention: bool = False,
    reader_wait_s: float = 300.0,
) -> list[dict]:
    """OPTIMIZE (date-partitioned tables) then VACUUM the job's tables (all, or those of
    `tables` it writes); wait for the driver's answers. A VACUUM waits up to `reader_wait_s`
    for the streaming readers of its table to read past the files it deletes, and a
    retention below the table's own needs `allow_short_retention` (spark/maintenance.py)."""
    job_key = job.key(check_namespace(namespace))
    chosen = [t for t in job.tables() if not tables or t.name in tables]
    if not chosen:
        log.info("%s writes none of %s: nothing to do", job_key, ", ".join(tables or ()))
        return []
    ids = [
        submit(settings, job_key, t.name, "optimize", closed_after_hours=closed_after_hours)
        for t in chosen
        if t.partitions
    ]
    ids += [
        submit(
            settings,
            job_key,
            t.name,
            "vacuum",
            retention_hours=retention_hours,
            allow_short_retention=allow_short_retention,
            reader_wait_s=reader_wait_s,
        )
        for t in chosen
    ]
    results = wait(settings, ids, timeout_s)
    for result in results:
        log.info("%s", json.dumps(result, default=str))
    return results
