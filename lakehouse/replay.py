"""Replay a table from its inputs, for the CLI and the DAG: any table whose declaration
names a replay application (`Table.replay`, e.g. the market's silver from bronze).

The replay application must be its table's only writer, so the owning stream is paused
around it: stopped, kept stopped by the supervisor, then started again if the operator
wanted it running. The serving tables follow through the Postgres sync, which applies the
replay's change feed (deletes and inserts of the replaced range).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from lakehouse import spark_submit, supervision
from lakehouse.layout import Layout
from lakehouse.registry import Registry
from lakehouse.settings import Settings

log = logging.getLogger(__name__)


def parse_time(text: str) -> int:
    """ISO-8601 (a date, or a time; naive means UTC) -> epoch milliseconds."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO time, e.g. 2026-01-01T09:30:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def check_request(registry: Registry, table: str, from_time: str) -> int:
    """The replay's start in epoch ms; ValueError saying what is wrong with the request."""
    if table not in registry.replayable:
        choices = ", ".join(registry.replayable) or "none"
        raise ValueError(f"cannot replay {table!r}: the replayable tables are {choices}")
    return parse_time(from_time)


def replay(settings: Settings, table: str, from_time: str, namespace: str = "") -> dict:
    """Pause the owning stream, rebuild `table` from `from_time`, resume; the job's report."""
    layout = Layout(settings, namespace)
    check_request(layout.registry, table, from_time)  # refused here, before any stop
    _, job = layout.registry.owner(table)
    args = ["--table", table, "--from", from_time]
    if namespace:
        args += ["--namespace", namespace]
    with supervision.paused(settings, job, namespace):
        log.info("replaying %s from %s (%s paused)", table, from_time, job.key(namespace))
        application = layout.registry.table(table).replay
        return spark_submit.run_with_report(settings, application, "replay", args)
