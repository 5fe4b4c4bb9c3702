"""OPTIMIZE and VACUUM inside the driver that writes the table (lakehouse/maintenance.py).

`MaintenanceWorker` is a thread of the streaming driver. It claims the requests filed for
its job and runs each while holding the writer lock of the table's query, the same lock that
query's foreachBatch holds around its appends: one process, one commit at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, date, datetime, timedelta

import psycopg
from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse import maintenance
from lakehouse.registry import Table
from lakehouse.settings import Settings
from spark.delta_sink import writer_lock

log = logging.getLogger(__name__)

DEFAULT_RETENTION_HOURS = 7 * 24
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


def vacuum(spark: SparkSession, path: str, retention_hours: float) -> dict:
    """VACUUM with Delta's retention check on (a retention shorter than the table's is
    refused). LITE takes the files to delete from the Delta log instead of listing the
    table's folder on S3; FULL runs only when LITE says the log no longer covers them."""
    mode = "LITE"
    try:
        spark.sql(f"VACUUM delta.`{path}` RETAIN {retention_hours} HOURS LITE")
    except Exception as error:
        if "FULL" not in str(error):
            raise
        mode = "FULL"
        spark.sql(f"VACUUM delta.`{path}` RETAIN {retention_hours} HOURS")
    last = DeltaTable.forPath(spark, path).history(1).select("operation", "operationMetrics")
    row = last.first()
    deleted = (
        int(row["operationMetrics"].get("numDeletedFiles", 0))
        if row["operation"] == "VACUUM END"
        else None
    )
    return {"retention_hours": retention_hours, "mode": mode, "files_deleted": deleted}


def run_request(spark: SparkSession, table: Table, path: str, request) -> dict:
    params = request.params
    if request.action == "optimize":
        if not table.partitions:
            raise ValueError(f"{table.name} is not partitioned by date: nothing is closed")
        before = closed_before(
            datetime.now(UTC), float(params.get("closed_after_hours", DEFAULT_CLOSED_AFTER_HOURS))
        )
        return optimize_closed_partitions(spark, path, table.partitions[0], before)
    return vacuum(spark, path, float(params.get("retention_hours", DEFAULT_RETENTION_HOURS)))


class MaintenanceWorker(threading.Thread):
    """Serves the job's maintenance requests until stopped."""

    def __init__(
        self,
        spark: SparkSession,
        settings: Settings,
        job_key: str,
        tables: dict[str, tuple[Table, str]],  # name -> (table, path in this layout)
        poll_s: float = 3.0,
    ) -> None:
        super().__init__(name=f"maintenance-{job_key}", daemon=True)
        self._spark, self._settings, self._job_key = spark, settings, job_key
        self._tables, self._poll_s = tables, poll_s
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
                result = run_request(self._spark, table, path, request)
        except Exception as error:  # reported to the requester, never fatal to the stream
            log.exception("%s of %s failed", request.action, table.name)
            maintenance.finish(conn, request.id, None, f"{type(error).__name__}: {error}")
            return
        result["waited_s"] = round(started - asked, 2)
        result["seconds"] = round(time.monotonic() - started, 2)
        log.info("%s of %s: %s", request.action, table.name, result)
        maintenance.finish(conn, request.id, result, None)
