"""Every micro-batch's progress, kept in Postgres: health, throughput and counted drops.

A StreamingQueryListener in the driver writes one row per (query id, batch id): rows in,
rows/s, duration, watermark, the rows the watermark dropped, the duplicates a
deduplicating operator dropped and, for Kafka sources, how many records were still waiting
in Kafka after the batch (the consumer lag) and, when the platform skips rather than fails
on lost offsets, the offsets Kafka no longer held (spark/kafka_offsets.py). The query id is stable
across restarts of the same checkpoint, and a batch replayed after a crash overwrites its
row, so sums over the table count every batch once. Supervision (Airflow) and the
dashboard's health page read this table; a failed write is logged, never fatal.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
from psycopg.types.json import Jsonb
from pyspark.sql.streaming import StreamingQueryListener
from pyspark.sql.streaming.listener import JStreamingQueryListener

from lakehouse.drivers import record_heartbeat
from lakehouse.settings import Settings
from spark.kafka_offsets import Partition, parse_kafka_offsets

log = logging.getLogger(__name__)

UPSERT = """
INSERT INTO stream_progress (query_id, batch_id, query_name, run_id, batch_time, input_rows,
    input_rows_per_s, processed_rows_per_s, duration_ms, watermark,
    rows_dropped_by_watermark, duplicates_dropped, state_rows, kafka_records_behind,
    kafka_offsets_lost, kafka_offsets_lost_by_partition)
VALUES (%(query_id)s, %(batch_id)s, %(query_name)s, %(run_id)s, %(batch_time)s,
    %(input_rows)s, %(input_rows_per_s)s, %(processed_rows_per_s)s, %(duration_ms)s,
    %(watermark)s, %(rows_dropped_by_watermark)s, %(duplicates_dropped)s, %(state_rows)s,
    %(kafka_records_behind)s, %(kafka_offsets_lost)s, %(kafka_offsets_lost_by_partition)s)
ON CONFLICT (query_id, batch_id) DO UPDATE SET
    run_id = EXCLUDED.run_id, batch_time = EXCLUDED.batch_time,
    input_rows = EXCLUDED.input_rows, input_rows_per_s = EXCLUDED.input_rows_per_s,
    processed_rows_per_s = EXCLUDED.processed_rows_per_s,
    duration_ms = EXCLUDED.duration_ms, watermark = EXCLUDED.watermark,
    rows_dropped_by_watermark = EXCLUDED.rows_dropped_by_watermark,
    duplicates_dropped = EXCLUDED.duplicates_dropped,
    state_rows = EXCLUDED.state_rows, kafka_records_behind = EXCLUDED.kafka_records_behind,
    kafka_offsets_lost = EXCLUDED.kafka_offsets_lost,
    kafka_offsets_lost_by_partition = EXCLUDED.kafka_offsets_lost_by_partition,
    recorded_at = now()
"""


def _timestamp(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def kafka_records_behind(sources: list[dict]) -> int | None:
    """Records in Kafka that the query had not read when its batch ended: per partition the
    latest offset minus the batch's end offset, summed over every Kafka source. None when
    the query reads no Kafka source or Spark did not report the latest offsets. Pure."""
    behind = None
    for source in sources:
        end = parse_kafka_offsets(source.get("endOffset"))
        latest = parse_kafka_offsets(source.get("latestOffset"))
        if end is None or latest is None:
            continue
        behind = (behind or 0) + sum(
            max(0, offset - end.get(partition, 0)) for partition, offset in latest.items()
        )
    return behind


# What a query's own code counted in a batch, by (query name, batch id), for its progress
# row: the rows it dropped behind the watermark (added to Spark's count; event bronze drops
# by the batch's watermark, see there) and the Kafka offsets the batch skipped.
_BATCH_COUNTS: dict[tuple[str, int], dict[str, object]] = {}
_KEPT_BATCHES = 1000  # more than Spark keeps in recentProgress (100 by default)


def _remember(query_name: str, batch_id: int, **counts: object) -> None:
    """Called from a foreachBatch in this driver; a replayed batch sets the same counts.
    A long-running driver keeps the counts of its last _KEPT_BATCHES batches per query."""
    _BATCH_COUNTS.setdefault((query_name, batch_id), {}).update(counts)
    _BATCH_COUNTS.pop((query_name, batch_id - _KEPT_BATCHES), None)


def count_late_drops(query_name: str, batch_id: int, rows: int) -> None:
    _remember(query_name, batch_id, late_drops=rows)


def record_lost_offsets(query_name: str, batch_id: int, lost: dict[Partition, int]) -> None:
    """The offsets per partition a batch skipped because Kafka no longer held them."""
    _remember(query_name, batch_id, lost_offsets=lost)


def progress_row(progress: dict) -> dict:
    """One table row from a StreamingQueryProgress (a dict in pyspark 4), plus the rows the
    query's code counted as dropped behind the watermark."""
    operators = progress.get("stateOperators") or []
    counted = _BATCH_COUNTS.get((progress.get("name"), progress["batchId"]), {})
    own_drops = counted.get("late_drops", 0)
    lost = counted.get("lost_offsets")  # None: not counted (the source fails instead)
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
        "kafka_offsets_lost": None if lost is None else sum(lost.values()),
        "kafka_offsets_lost_by_partition": None
        if not lost
        else Jsonb({f"{topic}[{partition}]": n for (topic, partition), n in sorted(lost.items())}),
    }


class _ProgressAsJson(JStreamingQueryListener):
    """The listener's Java side: a progress event reaches it as the dict of the progress's
    JSON, one call into the JVM. pyspark's own conversion makes tens of calls and looks up
    a JVM class by name for each observed metric; py4j tries that name in every imported
    package, and each miss scans the whole classpath: a tenth of an idle driver's CPU."""

    def onQueryProgress(self, jevent) -> None:
        self.pylistener.onQueryProgress(json.loads(jevent.progress().json()))


class PostgresProgressListener(StreamingQueryListener):
    """Also the driver's heartbeat: every progress or idle event of a query refreshes
    stream_heartbeat for (job_key, query), which the supervisor reads to spot a stall.

    Its onQueryProgress takes the progress as a dict (the JSON Spark reports), not
    pyspark's QueryProgressEvent."""

    def __init__(self, settings: Settings, job_key: str) -> None:
        global _DRIVER_LISTENER
        self._dsn = settings.postgres_dsn()
        self._job_key = job_key
        self._names: dict[str, str] = {}  # query id -> name (idle events carry no name)
        _DRIVER_LISTENER = self

    def heartbeat(self, query_name: str) -> None:
        self._write(
            f"heartbeat of {query_name}",
            lambda conn: record_heartbeat(conn, self._job_key, query_name),
        )

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

    @property
    def _jlistener(self):
        # pyspark registers this JVM object on addListener and looks it up on removeListener.
        from pyspark import SparkContext

        if not hasattr(self, "_jlistenerobj"):
            self._jlistenerobj = SparkContext._jvm.PythonStreamingQueryListenerWrapper(
                _ProgressAsJson(self)
            )
        return self._jlistenerobj

    def onQueryProgress(self, progress: dict) -> None:
        row = progress_row(progress)

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


_DRIVER_LISTENER: PostgresProgressListener | None = None  # the driver's, once it has one
BATCH_HEARTBEAT_EVERY_S = 30.0


def batch_heartbeat(
    query_name: str, clock: Callable[[], float] = time.monotonic
) -> Callable[[], None]:
    """What a long foreachBatch calls as its work advances (a sink wrote a chunk, a table
    committed): it refreshes the query's heartbeat, at most every 30 s. The supervisor then
    tells a batch that is slow but advancing from a stalled one, and does not restart it
    into the same long batch again. Does nothing outside a driver (tests, benches)."""
    last = clock()

    def advanced() -> None:
        nonlocal last
        if _DRIVER_LISTENER is None or clock() - last < BATCH_HEARTBEAT_EVERY_S:
            return
        last = clock()
        _DRIVER_LISTENER.heartbeat(query_name)

    return advanced
