"""The CSV drops stream: a folder of CSV files -> Postgres `user_events`, exactly once.

extract: Spark's file stream over the input folder, each new file read whole (`binaryFile`:
  path, size, bytes), at most `files_per_batch` files per micro-batch. Files whose names
  start with "." or "_" are never listed: writers drop a file under a hidden name and rename
  it, and the archive and rejected folders live inside the input folder under "_" names.
transform: each file parsed and cleaned by spark/jobs/csv/cleaning.py on the executors
  (mapInArrow), giving one record per accepted row, per refused row (reason, line, raw
  text) and per file (its row count, or why it could not be read), plus `processed_at`.
load: one Postgres transaction per micro-batch (the batch recorded in the sink ledger, so a
  replayed batch changes nothing): the accepted rows COPYed into a staging table and
  inserted into `user_events` with ON CONFLICT (event_id) DO NOTHING, the refused rows into
  `user_events_quarantine`, one row per file into `csv_files`. Only then are the files moved:
  read ones to `_archive/` (or deleted, setting `csv_after_load`), unreadable ones to
  `_rejected/` with a `.reason` file beside them. A driver killed between the commit and the
  moves replays the batch: the ledger skips the load, the moves happen, and a file already
  moved is skipped by the reader (ignoreMissingFiles).

Why not Spark's `cleanSource`: it moves a batch's files only when the next batch starts, so
the last drop into a quiet folder would stay there indefinitely.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

import psycopg
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import (
    BinaryType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from lakehouse.layout import Layout
from lakehouse.migrations import validate_schema
from lakehouse.pipelines.csv import ARCHIVE_FOLDER, LOAD_QUERY, REJECTED_FOLDER
from lakehouse.settings import Settings
from spark.checkpoints import sink_identity
from spark.jobs.csv.cleaning import parse_file
from spark.postgres_sink import record_batch

log = logging.getLogger(__name__)

FILE_SCHEMA = StructType(
    [
        StructField("path", StringType()),
        StructField("modificationTime", TimestampType()),
        StructField("length", LongType()),
        StructField("content", BinaryType()),
    ]
)
EVENT, REFUSED, FILE = "event", "refused", "file"
# One schema for the three kinds of record; each kind fills its own columns.
RECORD_SCHEMA = StructType(
    [
        StructField("record", StringType(), False),
        StructField("source_file", StringType(), False),
        StructField("line_number", IntegerType()),
        StructField("event_id", StringType()),
        StructField("user_id", StringType()),
        StructField("product_id", StringType()),
        StructField("event_type", StringType()),
        StructField("product_price", DoubleType()),
        StructField("event_timestamp", TimestampType()),
        StructField("reason", StringType()),  # a refused row's, or an unreadable file's
        StructField("raw_line", StringType()),
        StructField("file_rows", IntegerType()),
        StructField("file_bytes", LongType()),
    ]
)
EVENT_COLUMNS = (  # of user_events
    "event_id",
    "user_id",
    "product_id",
    "event_type",
    "product_price",
    "event_timestamp",
    "processed_at",
    "source_file",
    "line_number",
)
QUARANTINE_COLUMNS = ("source_file", "line_number", "reason", "raw_line")
# The same schema as the Python side builds it (timestamps in UTC).
_ARROW_SCHEMA = to_arrow_schema(RECORD_SCHEMA, timezone="UTC")


def file_records(path: str, content: bytes) -> pa.RecordBatch:
    """Every record one file gives: its accepted rows, its refused rows, itself."""
    parsed = parse_file(path, content)
    accepted, refused = parsed.accepted, parsed.refused
    n_accepted, n_refused = len(accepted["line_number"]), len(refused)
    total = n_accepted + n_refused + 1

    def padded(values: list, before: int = 0) -> list:
        return [None] * before + values + [None] * (total - before - len(values))

    columns = {
        "record": [EVENT] * n_accepted + [REFUSED] * n_refused + [FILE],
        "source_file": [path] * total,
        "line_number": padded(accepted["line_number"] + [r.line_number for r in refused]),
        "event_id": padded(accepted["event_id"]),
        "user_id": padded(accepted["user_id"]),
        "product_id": padded(accepted["product_id"]),
        "event_type": padded(accepted["event_type"]),
        "product_price": padded(accepted["product_price"]),
        "event_timestamp": padded(accepted["event_time_us"]),
        "reason": padded([r.reason for r in refused] + [parsed.unreadable], n_accepted),
        "raw_line": padded([r.raw_line for r in refused], n_accepted),
        "file_rows": padded([parsed.rows], n_accepted + n_refused),
        "file_bytes": padded([len(content)], n_accepted + n_refused),
    }
    return pa.RecordBatch.from_pydict(columns, schema=_ARROW_SCHEMA)


def _parse_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        for path, content in zip(
            batch.column("path").to_pylist(), batch.column("content").to_pylist(), strict=True
        ):
            yield file_records(path, content or b"")


def extract(spark: SparkSession, folder: str, files_per_batch: int) -> DataFrame:
    return (
        spark.readStream.format("binaryFile")
        .schema(FILE_SCHEMA)
        .option("maxFilesPerTrigger", files_per_batch)
        # A replayed batch whose files were already moved: the ledger skips it anyway.
        .option("ignoreMissingFiles", "true")
        .load(folder)
    )


def transform(files: DataFrame) -> DataFrame:
    """Files (path, content) -> their records, with the micro-batch's `processed_at`."""
    return (
        files.select("path", "content")
        .mapInArrow(_parse_batches, RECORD_SCHEMA)
        .withColumn("processed_at", F.current_timestamp())
    )


# ---- load ----------------------------------------------------------------------------

STAGE = "csv_load_stage"  # one per serving schema: the job's driver lock makes it single-use
STAGE_COLUMNS = (*RECORD_SCHEMA.fieldNames(), "processed_at")
_STAGE_DDL = """
CREATE UNLOGGED TABLE "{schema}".{stage} (
    record text NOT NULL, source_file text NOT NULL, line_number integer, event_id text,
    user_id text, product_id text, event_type text, product_price double precision,
    event_timestamp timestamptz, reason text, raw_line text, file_rows integer,
    file_bytes bigint, processed_at timestamptz
)"""


def stage(records: DataFrame, dsn: str, schema: str) -> int:
    """COPY a micro-batch's records into the schema's staging table from the executors,
    each task on its own connection (nothing goes through the driver); returns the rows.

    The table is made empty first. A retried task may have copied its rows twice: the
    statements that read the table tolerate repeats.
    """
    schema = validate_schema(schema)
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        conn.execute(f'DROP TABLE IF EXISTS "{schema}".{STAGE}')
        conn.execute(_STAGE_DDL.format(schema=schema, stage=STAGE))
    table = f'"{schema}".{STAGE}'

    def copy_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from lakehouse.pg_copy import copy_batches

        with psycopg.connect(dsn, connect_timeout=10) as conn:
            copied = copy_batches(conn, table, STAGE_COLUMNS, batches)
        yield pa.RecordBatch.from_pydict({"rows": [copied]})

    counts = records.mapInArrow(copy_partition, "rows long").collect()
    return sum(row["rows"] for row in counts)


def _summaries(files: list[tuple], refused: dict[str, int], loaded: dict[str, int]) -> list[dict]:
    """One row of `csv_files` per (source_file, reason, file_rows, file_bytes)."""
    summaries = []
    for path, reason, total, size in files:
        new, bad = loaded.get(path, 0), refused.get(path, 0)
        summaries.append(
            {
                "source_file": path,
                "status": "rejected" if reason else "loaded",
                "reason": reason,
                "bytes": size,
                "rows": total,
                "loaded": new,
                "already_loaded": 0 if reason else total - new - bad,
                "quarantined": bad,
            }
        )
    return summaries


_INSERT_FILES = """
INSERT INTO "{schema}".csv_files (source_file, status, reason, bytes, rows, loaded,
    already_loaded, quarantined, batch_id)
VALUES (%(source_file)s, %(status)s, %(reason)s, %(bytes)s, %(rows)s, %(loaded)s,
    %(already_loaded)s, %(quarantined)s, %(batch_id)s)
ON CONFLICT (source_file) DO UPDATE SET status = EXCLUDED.status, reason = EXCLUDED.reason,
    bytes = EXCLUDED.bytes, rows = EXCLUDED.rows, loaded = EXCLUDED.loaded,
    already_loaded = EXCLUDED.already_loaded, quarantined = EXCLUDED.quarantined,
    batch_id = EXCLUDED.batch_id, processed_at = now()"""


@dataclass(frozen=True)
class BatchResult:
    files: list[dict]  # source_file and reason of each; its counts too when applied now
    reasons: Counter  # refused rows by reason (empty when not applied now)
    applied: bool  # False: the ledger says the batch was applied before


def apply_stage(
    settings: Settings, schema: str, sink: str, batch_id: int, staged: int
) -> BatchResult:
    """The staged batch into the serving tables, in one transaction with its ledger row."""
    schema = validate_schema(schema)
    table = f'"{schema}".{STAGE}'
    with psycopg.connect(settings.postgres_dsn(), connect_timeout=10) as conn:
        files = conn.execute(
            f"SELECT DISTINCT ON (source_file) source_file, reason, file_rows, file_bytes "
            f"FROM {table} WHERE record = '{FILE}' ORDER BY source_file"
        ).fetchall()
        if not record_batch(conn, schema, sink, batch_id, staged):
            conn.execute(f"DROP TABLE {table}")
            files_only = [{"source_file": path, "reason": reason} for path, reason, *_ in files]
            return BatchResult(files_only, Counter(), applied=False)
        events = ", ".join(EVENT_COLUMNS)
        # Sorted by the key: index pages are touched in order; of several rows with one
        # event id, the first file and line wins.
        loaded = dict(
            conn.execute(
                f'WITH new AS (INSERT INTO "{schema}".user_events ({events}) '
                f"SELECT {events} FROM {table} WHERE record = '{EVENT}' "
                "ORDER BY event_id, source_file, line_number "
                "ON CONFLICT (event_id) DO NOTHING RETURNING source_file) "
                "SELECT source_file, count(*) FROM new GROUP BY source_file"
            ).fetchall()
        )
        quarantine = ", ".join(QUARANTINE_COLUMNS)
        conn.execute(
            f'INSERT INTO "{schema}".user_events_quarantine ({quarantine}) '
            f"SELECT DISTINCT ON (source_file, line_number) {quarantine} FROM {table} "
            f"WHERE record = '{REFUSED}' ORDER BY source_file, line_number "
            "ON CONFLICT DO NOTHING"
        )
        # Counted in Postgres (a retried task may have staged a row twice): a file of
        # nothing but bad rows costs one row per file and reason here, not one per line.
        refused_counts = conn.execute(
            f"SELECT source_file, reason, count(DISTINCT line_number) FROM {table} "
            f"WHERE record = '{REFUSED}' GROUP BY source_file, reason"
        ).fetchall()
        refused, reasons = Counter(), Counter()
        for path, reason, count in refused_counts:
            refused[path] += count
            reasons[reason] += count
        summaries = _summaries(files, refused, loaded)
        with conn.cursor() as cursor:
            cursor.executemany(
                _INSERT_FILES.format(schema=schema),
                [{**summary, "batch_id": batch_id} for summary in summaries],
            )
        conn.execute(f"DROP TABLE {table}")
    return BatchResult(summaries, reasons, applied=True)


def load_batch(
    records: DataFrame, settings: Settings, schema: str, sink: str, batch_id: int
) -> BatchResult:
    """Stage a micro-batch's records from the executors, then apply them once."""
    staged = stage(records, settings.postgres_dsn(), schema)
    return apply_stage(settings, schema, sink, batch_id, staged)


class FileMover:
    """Moves processed files with Hadoop's FileSystem API: a local folder or s3a alike."""

    def __init__(self, spark: SparkSession, after_load: str):
        self.jvm = spark.sparkContext._jvm
        self.conf = spark.sparkContext._jsc.hadoopConfiguration()
        self.after_load = after_load

    def _path(self, uri: str):
        path = self.jvm.org.apache.hadoop.fs.Path(uri)
        return path, path.getFileSystem(self.conf)

    def _move(self, uri: str, folder: str, batch_id: int) -> str | None:
        source, fs = self._path(uri)
        if not fs.exists(source):
            return None  # moved when this batch ran before
        name = PurePosixPath(uri).name
        target_dir = self.jvm.org.apache.hadoop.fs.Path(source.getParent(), folder)
        target = self.jvm.org.apache.hadoop.fs.Path(target_dir, name)
        if fs.exists(target):  # a name used before: keep both
            target = self.jvm.org.apache.hadoop.fs.Path(target_dir, f"{name}.batch-{batch_id}")
        fs.mkdirs(target_dir)
        if not fs.rename(source, target):
            raise OSError(f"could not move {uri} to {target.toString()}")
        return target.toString()

    def reject(self, uri: str, reason: str, batch_id: int) -> None:
        moved = self._move(uri, REJECTED_FOLDER, batch_id)
        if moved is None:
            return
        target, fs = self._path(moved + ".reason")
        fs.setWriteChecksum(False)  # no .crc beside it on a local disk
        stream = fs.create(target, True)
        try:
            stream.write(bytearray(f"{reason}\n".encode()))
        finally:
            stream.close()
        log.warning("rejected %s: %s (moved to %s)", uri, reason, moved)

    def done(self, uri: str, batch_id: int) -> None:
        if self.after_load == "delete":
            source, fs = self._path(uri)
            fs.delete(source, False)
        else:
            self._move(uri, ARCHIVE_FOLDER, batch_id)


def describe(batch_id: int, summaries: list[dict], reasons: Counter) -> str:
    read = [s for s in summaries if s["status"] == "loaded"]
    rejected = [s["source_file"] for s in summaries if s["status"] == "rejected"]
    return (
        f"batch {batch_id}: {len(read)} files read, {len(rejected)} rejected; "
        f"rows {sum(s['rows'] for s in read)}: loaded {sum(s['loaded'] for s in read)}, "
        f"already loaded {sum(s['already_loaded'] for s in read)}, "
        f"quarantined {sum(reasons.values())} {dict(sorted(reasons.items()))}"
    )


def start(
    spark: SparkSession,
    settings: Settings,
    layout: Layout,
    *,
    trigger: dict,
    files_per_batch: int,
):
    folder = layout.folder(settings.csv_input_folder)
    checkpoint = layout.checkpoint(LOAD_QUERY)
    mover = FileMover(spark, settings.csv_after_load)
    sinks: list[str] = []

    def per_batch(records: DataFrame, batch_id: int) -> None:
        if not sinks:  # after the query started: its checkpoint names the sink
            sinks.append(sink_identity(LOAD_QUERY, checkpoint))
        result = load_batch(records, settings, layout.serving_schema, sinks[0], batch_id)
        if result.applied:
            log.info(describe(batch_id, result.files, result.reasons))
        else:
            log.info("batch %d was loaded before: only its files are moved", batch_id)
        for file in result.files:
            if file["reason"]:
                mover.reject(file["source_file"], file["reason"], batch_id)
            else:
                mover.done(file["source_file"], batch_id)

    _ensure_folder(spark, folder)
    return (
        transform(extract(spark, folder, files_per_batch))
        .writeStream.queryName(LOAD_QUERY)
        .foreachBatch(per_batch)
        .option("checkpointLocation", checkpoint)
        .trigger(**trigger)
        .start()
    )


def _ensure_folder(spark: SparkSession, folder: str) -> None:
    """Spark's file stream refuses a folder that does not exist: create it empty."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(folder)
    path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).mkdirs(path)
