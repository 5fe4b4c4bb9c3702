"""Every micro-batch's progress, kept in Postgres: health, throughput and counted drops.

A StreamingQueryListener in the driver writes one row per (query id, batch id): rows in,
rows/s, duration, watermark, the rows the watermark dropped, the duplicates a
deduplicating operator dropped and, for Kafka sources, how many
records were still waiting in Kafka after the batch (the consumer lag). The query id is stable
across restarts of the same checkpoint, and a batch replayed after a crash overwrites its
row, so sums over the table count every batch once. Supervision (Airflow) and the
dashboard's health page read this table; a failed write is logged, never fatal.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import psycopg
from pyspark.sql.streaming import StreamingQueryListener

from lakehouse.drivers import record_heartbeat
from lakehouse.settings import Settings

log = logging.getLogger(__name__)

UPSERT = """
INSERT INTO stream_progress (query_id, batch_id, query_name, run_id, batch_time, input_rows,
    input_rows_per_s, processed_rows_per_s, duration_ms, watermark,
    rows_dropped_by_watermark, duplicates_dropped, state_rows, kafka_records_behind)
VALUES (%(query_id)s, %(batch_id)s, %(query_name)s, %(run_id)s, %(batch_time)s,
    %(input_rows)s, %(input_rows_per_s)s, %(processed_rows_per_s)s, %(duration_ms)s,
    %(watermark)s, %(rows_dropped_by_watermark)s, %(duplicates_dropped)s, %(state_rows)s,
    %(kafka_records_behind)s)
ON CONFLICT (query_id, batch_id) DO UPDATE SET
    run_id = EXCLUDED.run_id, batch_time = EXCLUDED.batch_time,
    input_rows = EXCLUDED.input_rows, input_rows_per_s = EXCLUDED.input_rows_per_s,
    processed_rows_per_s = EXCLUDED.processed_rows_per_s,
    duration_ms = EXCLUDED.duration_ms, watermark = EXCLUDED.watermark,
    rows_dropped_by_watermark = EXCLUDED.rows_dropped_by_watermark,
    duplicates_dropped = EXCLUDED.duplicates_dropped,
    state_rows = EXCLUDED.state_rows, kafka_records_behind = EXCLUDED.kafka_records_behind,
    recorded_at = now()
"""


def _timestamp(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _kafka_offsets(text: str | None) -> dict[tuple[str, str], int] | None:
    """{(topic, partition): offset} from a Kafka source's offset JSON; None for other sources
    (a Delta source's offset is one flat object, and Spark writes "None" when it has none)."""
    try:
        parsed = json.loads(text) if text else None
    except (TypeError, ValueError):
        return None
    if not isinstance(parsed, dict) or not parsed:
        return None
    offsets = {}
    for topic, partitions in parsed.items():
        if not isinstance(partitions, dict):
            return None
        for partition, offset in partitions.items():
            if not isinstance(offset, int):
                return None
            offsets[(topic, partition)] = offset
    return offsets


def kafka_records_behind(sources: list[dict]) -> int | None:
    """Records in Kafka that the query had not read when its batch ended: per partition the
    latest offset minus the batch's end offset, summed over every Kafka source. None when
    the query reads no Kafka source or Spark did not report the latest offsets. Pure."""
    behind = None
    for source in sources:
        end = _kafka_offsets(source.get("endOffset"))
        latest = _kafka_offsets(source.get("latestOffset"))
        if end is None or latest is None:
            continue
        behind = (behind or 0) + sum(
            max(0, offset - end.get(partition, 0)) for partition, offset in latest.items()
        )
    return behind


# Rows a query's own code dropped behind the watermark, by (query name, batch id): added to
# Spark's count of the batch (event bronze drops by the batch's watermark, see there).
_LATE_DROPS: dict[tuple[str, int], int] = {}


_KEPT_BATCHES = 1000  # more than Spark keeps in recentProgress (100 by default)


def count_late_drops(query_name: str, batch_id: int, rows: int) -> None:
    """Called from a foreachBatch in this driver; a replayed batch sets the same count.
    A long-running driver keeps the counts of its last _KEPT_BATCHES batches per query."""
    _LATE_DROPS[(query_name, batch_id)] = rows
    _LATE_DROPS.pop((query_name, batch_id - _KEPT_BATCHES), None)


def progress_row(progress: dict) -> dict:
    """One table row from a StreamingQueryProgress (a dict in pyspark 4), plus the rows the
    query's code counted as dropped behind the watermark."""
    operators = progress.get("stateOperators") or []
    own_drops = _LATE_DROPS.get((progress.get("name"), progress["batchId"]), 0)
    return {
        "query_id": str(progress["id"]),
        "batch_id": progress["batchId"],
        "query_name": progress.get("name"),
        "run_id": str(progress["runId"]),
        "batch_time": _timestamp(progress["timestamp"]),
        "input_rows": progress.get("numInputRows") or 0,
        "input_rows_per_s": progress.get("inputRowsPerSecond"),
        "processed_rows_per_s": progress.get("processedRowsPerSecond"),
        "duration_ms": (progress.get("durationMs") or {}).get("triggerExecution"),
        "watermark": _timestamp((progress.get("eventTime") or {}).get("watermark")),
        "rows_dropped_by_watermark": own_drops
        + sum(op.get("numRowsDroppedByWatermark", 0) for op in operators),
        "duplicates_dropped": sum(
            (op.get("customMetrics") or {}).get("numDroppedDuplicateRows", 0) for op in operators
        ),
        "state_rows": sum(op.get("numRowsTotal", 0) for op in operators) if operators else None,
        "kafka_records_behind": kafka_records_behind(progress.get("sources") or []),
    }


class PostgresProgressListener(StreamingQueryListener):
    """Also the driver's heartbeat: every progress or idle event of a query refreshes
    stream_heartbeat for (job_key, query), which the supervisor reads to spot a stall."""

    def __init__(self, settings: Settings, job_key: str) -> None:
        self._dsn = settings.postgres_dsn()
        self._job_key = job_key
        self._names: dict[str, str] = {}  # query id -> name (idle events carry no name)

    def _write(self, what: str, write) -> None:
        try:
            with psycopg.connect(self._dsn, autocommit=True, connect_timeout=5) as conn:
                write(conn)
        except psycopg.Error as error:
            log.warning("could not record %s: %s", what, error)

    def onQueryStarted(self, event) -> None:
        log.info("query %s started (id %s, run %s)", event.name, event.id, event.runId)
        self._names[str(event.id)] = event.name
        self._write(
            f"start of {event.name}",
            lambda conn: record_heartbeat(conn, self._job_key, event.name),
        )

    def onQueryProgress(self, event) -> None:
        row = progress_row(event.progress)

        def write(conn):
            conn.execute(UPSERT, row)
            record_heartbeat(conn, self._job_key, row["query_name"], row["batch_id"])

        self._write(f"progress of {row['query_name']} batch {row['batch_id']}", write)

    def onQueryIdle(self, event) -> None:
        name = self._names.get(str(event.id))
        if name:
            self._write(
                f"idle event of {name}", lambda conn: record_heartbeat(conn, self._job_key, name)
            )

    def onQueryTerminated(self, event) -> None:
        if event.exception:
            log.error("query %s failed: %s", event.id, event.exception)
        else:
            log.info("query %s stopped", event.id)
