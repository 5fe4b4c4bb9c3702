"""OPTIMIZE and VACUUM inside the driver that writes the table (lakehouse/maintenance.py).

`MaintenanceWorker` is a thread of the streaming driver. It claims the requests filed for
its job and runs each while holding the writer lock of the table's query, the same lock that
query's foreachBatch holds around its appends: one process, one commit at a time.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse import maintenance
from lakehouse.registry import Table
from lakehouse.settings import Settings
from spark.checkpoints import delta_stream_readers
from spark.delta_sink import writer_lock

log = logging.getLogger(__name__)

DEFAULT_RETENTION_HOURS = 7 * 24
DEFAULT_READER_WAIT_S = 300.0
DEFAULT_CLOSED_AFTER_HOURS = 1.0


def closed_before(now: datetime, closed_after_hours: float) -> date:
    """Date partitions before this day take no more writes: late data is bounded by the
    watermark (seconds), and `closed_after_hours` past midnight leaves a wide margin."""
    return (now - timedelta(hours=closed_after_hours)).date()


def files_per_partition(spark: SparkSession, path: str, column: str, before: date) -> dict:
    """Live data files per closed partition value (from the table's current snapshot)."""
    rows = (
        spark.read.format("delta")
        .load(path)
        .where(F.col(column) < F.lit(before))
        .groupBy(column)
        .agg(F.countDistinct("_metadata.file_path").alias("files"))
        .collect()
    )
    return {row[column]: row["files"] for row in rows}


def optimize_closed_partitions(spark: SparkSession, path: str, column: str, before: date) -> dict:
    """Compact the date partitions before `before`. Delta's OPTIMIZE leaves a partition
    that is already one file alone, so a second run rewrites and commits nothing."""
    metrics = (
        DeltaTable.forPath(spark, path)
        .optimize()
        .where(f"{column} < '{before.isoformat()}'")
        .executeCompaction()
        .select("metrics.*")
        .first()
    )
    return {
        "closed_before": before.isoformat(),
        "partitions_optimized": metrics["partitionsOptimized"],
        "files_considered": metrics["totalConsideredFiles"],
        "files_removed": metrics["numFilesRemoved"],
        "files_added": metrics["numFilesAdded"],
    }


# Commits that change only metadata; any other operation is taken to remove files, except
# appends (checked by their mode).
_METADATA_ONLY = frozenset(
    {
        "CREATE TABLE",
        "SET TBLPROPERTIES",
        "UNSET TBLPROPERTIES",
        "ADD COLUMNS",
        "CHANGE COLUMN",
        "UPGRADE PROTOCOL",
        "ADD CONSTRAINT",
        "DROP CONSTRAINT",
        "VACUUM START",
        "VACUUM END",
    }
)
_INTERVAL_HOURS = {"second": 1 / 3600, "minute": 1 / 60, "hour": 1, "day": 24, "week": 168}
RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
RETENTION_WINDOW_IGNORE = "spark.databricks.delta.vacuum.retentionWindowIgnore.enabled"
VACUUM_LOGGING = "spark.databricks.delta.vacuum.logging.enabled"


class VacuumRefused(RuntimeError):
    pass


def removes_files(operation: str, parameters: dict[str, str]) -> bool:
    """Whether a commit (as DESCRIBE HISTORY shows it) can have removed data files."""
    if operation in _METADATA_ONLY:
        return False
    if operation == "WRITE":
        return parameters.get("mode") != "Append"
    if operation == "STREAMING UPDATE":
        return parameters.get("outputMode") != "Append"
    return True


def declared_retention_hours(properties: dict[str, str]) -> float:
    """The table's `delta.deletedFileRetentionDuration` in hours (Delta's default: 7 days).
    A value this cannot read counts as 0, which makes the reader check strictest."""
    value = properties.get("delta.deletedFileRetentionDuration")
    if value is None:
        return float(DEFAULT_RETENTION_HOURS)
    match = re.fullmatch(
        r"\s*interval\s+(\d+(?:\.\d+)?)\s+(second|minute|hour|day|week)s?\s*", value, re.I
    )
    return float(match[1]) * _INTERVAL_HOURS[match[2].lower()] if match else 0.0


def readers_in_the_way(readers: dict[str, int], removing_versions: list[int]) -> dict[str, int]:
    """The streaming readers that still have to read files these commits removed: those that
    resume below the newest of them (a file removed at version v was added below v)."""
    if not removing_versions:
        return {}
    newest = max(removing_versions)
    return {query: version for query, version in readers.items() if version < newest}


def removing_versions_after(
    spark: SparkSession, path: str, version: int, removed_before_s: float
) -> list[int]:
    """Commits after `version` that removed files before `removed_before_s` (epoch seconds),
    i.e. whose files a VACUUM with that cutoff deletes. Reads only the commits after
    `version`, so the cost follows the slowest reader's lag, not the log's length."""
    table = DeltaTable.forPath(spark, path)
    head = table.history(1).first()["version"]
    if head <= version:
        return []
    commits = (
        table.history(head - version)
        .select(
            "version",
            F.col("timestamp").cast("double").alias("at"),
            "operation",
            "operationParameters",
        )
        .collect()
    )
    # A remove's timestamp is taken when its commit starts; a minute of slack covers it.
    return [
        c["version"]
        for c in commits
        if c["version"] > version
        and c["at"] < removed_before_s + 60
        and removes_files(c["operation"], c["operationParameters"] or {})
    ]


def wait_for_readers(
    spark: SparkSession,
    path: str,
    table_id: str,
    checkpoint_root: Path,
    retention_hours: float,
    wait_s: float,
    poll_s: float = 2.0,
) -> dict[str, int]:
    """Wait until no streaming reader of the table (Delta id `table_id`) still needs a file
    the VACUUM would delete; return every reader's resume version. The caller holds the
    table's writer lock, so no new commit removes files meanwhile and the readers can only
    catch up."""
    deadline = time.monotonic() + wait_s
    while True:
        readers = delta_stream_readers(checkpoint_root, table_id)
        cutoff = time.time() - retention_hours * 3600
        removing = (
            removing_versions_after(spark, path, min(readers.values()), cutoff) if readers else []
        )
        behind = readers_in_the_way(readers, removing)
        if not behind:
            return readers
        if time.monotonic() > deadline:
            lagging = ", ".join(f"{q} (resumes at version {v})" for q, v in sorted(behind.items()))
            raise VacuumRefused(
                f"VACUUM would delete files that {lagging} still has to read (the newest "
                f"commit that removed files is version {max(removing)}); waited {wait_s:g} s. "
                "Start that stream and let it catch up, or delete its checkpoint if the query "
                "is gone."
            )
        time.sleep(poll_s)


def vacuum(
    spark: SparkSession,
    path: str,
    retention_hours: float,
    *,
    checkpoint_root: Path | None = None,
    allow_short_retention: bool = False,
    reader_wait_s: float = DEFAULT_READER_WAIT_S,
) -> dict:
    """VACUUM that never deletes a file a streaming reader of the table still needs.

    It keeps `retention_hours` of removed files. A retention below the table's declared one
    is refused unless `allow_short_retention`; then Delta's own check is turned off for this
    command only. Either way the command first waits until every checkpointed reader under
    `checkpoint_root` has read past the commits whose files it deletes. LITE takes the
    files to delete from the Delta log instead of listing the table's folder on S3; FULL runs
    only when LITE says the log no longer covers them."""
    detail = DeltaTable.forPath(spark, path).detail().first()
    declared = declared_retention_hours(detail["properties"] or {})
    short = retention_hours < declared
    if short and not allow_short_retention:
        raise VacuumRefused(
            f"a retention of {retention_hours:g} h is below the table's {declared:g} h: time "
            "travel and readers of older versions lose their files. Ask again with "
            "allow_short_retention if that is meant."
        )
    readers = (
        wait_for_readers(spark, path, detail["id"], checkpoint_root, retention_hours, reader_wait_s)
        if checkpoint_root is not None
        else {}
    )
    # Its own session: the stream's keeps Delta's defaults.
    session = spark.newSession()
    # Delta 4.4 ignores RETAIN unless it is 0 and deletes by the table's retention instead
    # (measured: RETAIN 168 HOURS deleted files removed seconds before from a table declared
    # with 0 s). Off, RETAIN keeps what it says.
    session.conf.set(RETENTION_WINDOW_IGNORE, "false")
    session.conf.set(RETENTION_CHECK, "false" if short else "true")
    session.conf.set(VACUUM_LOGGING, spark.conf.get(VACUUM_LOGGING, "true"))
    mode = "LITE"
    try:
        session.sql(f"VACUUM delta.`{path}` RETAIN {retention_hours} HOURS LITE")
    except Exception as error:
        if "FULL" not in str(error):
            raise
        mode = "FULL"
        session.sql(f"VACUUM delta.`{path}` RETAIN {retention_hours} HOURS")
    last = DeltaTable.forPath(spark, path).history(1).select("operation", "operationMetrics")
    row = last.first()
    deleted = (
        int(row["operationMetrics"].get("numDeletedFiles", 0))
        if row["operation"] == "VACUUM END"
        else None
    )
    return {
        "retention_hours": retention_hours,
        "mode": mode,
        "files_deleted": deleted,
        "readers": readers,
    }


def run_request(
    spark: SparkSession, table: Table, path: str, request, checkpoint_root: Path | None = None
) -> dict:
    params = request.params
    if request.action == "optimize":
        if not table.partitions:
            raise ValueError(f"{table.name} is not partitioned by date: nothing is closed")
        before = closed_before(
            datetime.now(UTC), float(params.get("closed_after_hours", DEFAULT_CLOSED_AFTER_HOURS))
        )
        return optimize_closed_partitions(spark, path, table.partitions[0], before)
    return vacuum(
        spark,
        path,
        float(params.get("retention_hours", DEFAULT_RETENTION_HOURS)),
        checkpoint_root=checkpoint_root,
        allow_short_retention=bool(params.get("allow_short_retention", False)),
        reader_wait_s=float(params.get("reader_wait_s", DEFAULT_READER_WAIT_S)),
    )


class MaintenanceWorker(threading.Thread):
    """Serves the job's maintenance requests until stopped."""

    def __init__(
        self,
        spark: SparkSession,
        settings: Settings,
        job_key: str,
        tables: dict[str, tuple[Table, str]],  # name -> (table, path in this layout)
        checkpoint_root: Path,  # the streaming readers a VACUUM must not outrun
        poll_s: float = 3.0,
    ) -> None:
        super().__init__(name=f"maintenance-{job_key}", daemon=True)
        self._spark, self._settings, self._job_key = spark, settings, job_key
        self._tables, self._checkpoint_root, self._poll_s = tables, checkpoint_root, poll_s
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        while not self._stopped.is_set():
            try:
                with psycopg.connect(self._settings.postgres_dsn(), autocommit=True) as conn:
                    maintenance.requeue_interrupted(conn, self._job_key)
                    while not self._stopped.is_set():
                        request = maintenance.claim_next(conn, self._job_key)
                        if request is None:
                            self._stopped.wait(self._poll_s)
                            continue
                        self._serve(conn, request)
            except psycopg.Error as error:
                log.warning("maintenance queue unavailable (%s); retrying", error)
                self._stopped.wait(10)

    def _serve(self, conn: psycopg.Connection, request) -> None:
        if request.table_name not in self._tables:
            maintenance.finish(conn, request.id, None, f"{self._job_key} does not own it")
            return
        table, path = self._tables[request.table_name]
        asked = time.monotonic()
        try:
            with writer_lock(table.writer):
                started = time.monotonic()  # after the writer's current micro-batch
                result = run_request(self._spark, table, path, request, self._checkpoint_root)
        except Exception as error:  # reported to the requester, never fatal to the stream
            log.exception("%s of %s failed", request.action, table.name)
            maintenance.finish(conn, request.id, None, f"{type(error).__name__}: {error}")
            return
        result["waited_s"] = round(started - asked, 2)
        result["seconds"] = round(time.monotonic() - started, 2)
        log.info("%s of %s: %s", request.action, table.name, result)
        maintenance.finish(conn, request.id, result, None)
