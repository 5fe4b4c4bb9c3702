"""Replay a silver table from bronze (seed 003's replayability), for the CLI and the DAG.

The replay application (spark.jobs.replay) must be its table's only writer, so the owning
stream is paused around it: stopped, kept stopped by the supervisor, then started again if
the operator wanted it running. The serving tables follow through the Postgres sync, which
applies the replay's change feed (deletes and inserts of the replaced range).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from lakehouse import spark_submit, supervision
from lakehouse.registry import REPLAYABLE_TABLES, STREAM_JOBS, TABLES, StreamJob
from lakehouse.settings import Settings

log = logging.getLogger(__name__)

APPLICATION = "spark.jobs.replay"


def parse_time(text: str) -> int:
    """ISO-8601 (a date, or a time; naive means UTC) -> epoch milliseconds."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO time, e.g. 2026-01-01T09:30:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def check_request(table: str, from_time: str) -> int:
    """The replay's start in epoch ms; ValueError saying what is wrong with the request."""
    if table not in REPLAYABLE_TABLES:
        choices = ", ".join(REPLAYABLE_TABLES)
        raise ValueError(f"cannot replay {table!r}: the replayable tables are {choices}")
    return parse_time(from_time)


def owning_job(table: str) -> StreamJob:
    writer = TABLES[table].writer
    return next(job for job in STREAM_JOBS.values() if writer in job.queries)


def replay(settings: Settings, table: str, from_time: str, namespace: str = "") -> dict:
    """Pause the owning stream, rebuild `table` from `from_time`, resume; the job's report."""
    check_request(table, from_time)  # refused here, before the stream is stopped
    job = owning_job(table)
    args = ["--table", table, "--from", from_time]
    if namespace:
        args += ["--namespace", namespace]
    with supervision.paused(settings, job, namespace):
        log.info("replaying %s from %s (%s paused)", table, from_time, job.key(namespace))
        return spark_submit.run_with_report(settings, APPLICATION, "replay", args)
