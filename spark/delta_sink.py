"""Delta reads and writes shared by the streaming jobs."""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, SparkSession

from spark.checkpoints import sink_identity

if TYPE_CHECKING:
    from lakehouse.layout import Layout

log = logging.getLogger(__name__)

_WRITER_LOCKS: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)


def table_stream(
    spark: SparkSession, layout: Layout, name: str, *, max_files: int | None = None
) -> DataFrame:
    """A registered Delta table as a stream (its commits in order), at most `max_files`
    files per micro-batch (None: Delta's default)."""
    reader = spark.readStream.format("delta")
    if max_files:
        reader = reader.option("maxFilesPerTrigger", str(max_files))
    return reader.load(layout.table(name))


def writer_lock(writer: str) -> threading.Lock:
    """The lock a writer (streaming query) holds around its commits; maintenance of its
    tables in the same driver takes it too, so one commit to a table runs at a time."""
    return _WRITER_LOCKS[writer]


@contextmanager
def persisted(df: DataFrame) -> Iterator[int]:
    """Keep a micro-batch cached while several writes read it, then release it. Yields its
    row count, which the writes take as the most rows any of their outputs has
    (`append_to_tables`).

    Computed here, not by the first write: when a batch is replayed after a crash, the
    appends it already committed are skipped without running their plan, and then the stateful
    operator would not run either. Spark takes the next watermark and the late-row counts
    from this execution; the enrichment releases trades on the strength of that watermark.
    """
    df.persist()
    try:
        yield df.count()
    finally:
        df.unpersist()


# A micro-batch's output is written by one task per this many rows. Kafka batches arrive in
# a partition per topic partition and stateful output in one per state partition: written
# as they came, 300 trades made three files, and each write task generates Delta's
# statistics projection afresh, the largest part of an idle driver's write CPU
# (docs/architecture.md, "What an idle driver spends its CPU on").
ROWS_PER_WRITE_TASK = 100_000


def write_tasks(rows: int) -> int:
    """The tasks (and files per partition value) a write of at most `rows` rows gets."""
    return max(1, -(-rows // ROWS_PER_WRITE_TASK))


# How many of a table's newest commits a writer searches for its own last batch when it
# starts. Only maintenance commits to a streaming table besides its one writer, and it runs
# inside that writer's driver, so the writer's last commit is always among the newest few.
BATCH_MARK_SEARCH_COMMITS = 100

# (writer id, table path) -> the newest batch this process appended or found there.
_LAST_BATCH: dict[tuple[str, str], int] = {}


def batch_mark(writer_id: str, batch_id: int) -> str:
    """The commit's userMetadata that names the (writer, batch) it appended."""
    return json.dumps({"writer": writer_id, "batch": batch_id}, separators=(",", ":"))


def marked_batch(user_metadata: str | None, writer_id: str | None = None) -> int | None:
    """The batch id a commit's userMetadata names, for `writer_id` or (None) any writer.
    None: another writer's commit, or one without a mark (maintenance, a user's write)."""
    try:
        mark = json.loads(user_metadata or "")
    except ValueError:
        return None
    if not isinstance(mark, dict) or (writer_id is not None and mark.get("writer") != writer_id):
        return None
    batch = mark.get("batch")
    return batch if isinstance(batch, int) else None


def last_marked_batch(user_metadata: Iterable[str | None], writer_id: str) -> int | None:
    """The highest batch id `writer_id` marked among these commits."""
    batches = [b for b in (marked_batch(m, writer_id) for m in user_metadata) if b is not None]
    return max(batches, default=None)


def _open_for_append(spark: SparkSession, path: str, writer_id: str) -> int | None:
    """A writer's first look at its table in this process: the last batch it has there,
    and the table's checkpoint interval set to the session's, should it differ (tables
    created before the setting)."""
    from delta.tables import DeltaTable

    from spark.session import CHECKPOINT_INTERVAL_DEFAULT

    if not DeltaTable.isDeltaTable(spark, path):
        return None
    wanted = spark.conf.get(CHECKPOINT_INTERVAL_DEFAULT, None)
    table = f"delta.`{path}`"
    if wanted:
        shown = spark.sql(f"SHOW TBLPROPERTIES {table} ('delta.checkpointInterval')").first()
        if shown is None or shown.value != wanted:
            log.info("%s: checkpoint interval set to %s commits", path, wanted)
            spark.sql(
                f"ALTER TABLE {table} SET TBLPROPERTIES ('delta.checkpointInterval' = {wanted})"
            )
    commits = (
        DeltaTable.forPath(spark, path)
        .history(BATCH_MARK_SEARCH_COMMITS)
        .select("userMetadata")
        .collect()
    )
    return last_marked_batch((row.userMetadata for row in commits), writer_id)


def append_exactly_once(
    df: DataFrame,
    path: str,
    writer_id: str,
    batch_id: int,
    partitions: tuple[str, ...] = (),
    *,
    rows: int | None = None,
) -> None:
    """Append one micro-batch unless the table already has it: a replayed (writer, batch)
    is skipped.

    foreachBatch runs a batch again after a crash, with the same id. Each append marks its
    commit with (writer, batch) in the commit's userMetadata, so the mark lands atomically
    with the data. A writer reads the marks of the table's newest commits once per process
    (the only time a batch can already be there); after that it knows its own last batch.

    Not Delta's txnAppId/txnVersion on every append: Delta 4.4 reads a table's
    transactions by rebuilding its whole state from the log, three Spark jobs per append
    whatever the batch's size (docs/architecture.md). The first append of a process still
    sets them, so batches that older versions recorded that way are skipped as well.
    `writer_id` must change when batch ids start again (a new checkpoint): see
    `append_to_tables`.

    `rows`, when known, bounds the rows of `df`: the write then runs in as few tasks as
    they need (`write_tasks`) instead of one per partition of `df`.
    """
    key = (writer_id, path)
    first_in_process = key not in _LAST_BATCH
    if first_in_process:
        known = _open_for_append(df.sparkSession, path, writer_id)
    else:
        known = _LAST_BATCH[key]
    if known is not None and batch_id <= known:
        log.info("%s: batch %d of %s is already in the table; skipped", path, batch_id, writer_id)
        _LAST_BATCH[key] = known
        return
    if rows is not None:
        df = df.coalesce(write_tasks(rows))  # never more partitions than df has
    writer = (
        df.write.format("delta")
        .mode("append")
        .option("userMetadata", batch_mark(writer_id, batch_id))
    )
    if first_in_process:
        writer = writer.option("txnAppId", writer_id).option("txnVersion", str(batch_id))
    if partitions:
        writer = writer.partitionBy(*partitions)
    try:
        writer.save(path)
    except BaseException:
        # The commit may have landed before the error: look in the table again next time.
        _LAST_BATCH.pop(key, None)
        raise
    _LAST_BATCH[key] = batch_id


def append_to_tables(
    layout: Layout,
    outputs: Iterable[tuple[str, DataFrame]],
    query: str,
    batch_id: int,
    *,
    rows: int | None = None,
) -> None:
    """Each (table name, rows) of one micro-batch of `query` appended exactly once to that
    registered table, at the layout's path and with its declared partitions. `rows`: the
    micro-batch's row count (`persisted`), when no output has more rows than the batch.

    The Delta writer id is the query's name with its checkpoint's query id: a deleted or
    reset checkpoint numbers its batches from 0 again, and under the bare name Delta would
    take them for batches it already has and drop them without a word.
    """
    writer_id = sink_identity(query, layout.checkpoint(query))
    for name, df in outputs:
        table = layout.registry.table(name)
        append_exactly_once(
            df, layout.table(table), writer_id, batch_id, table.partitions, rows=rows
        )


def create_missing_tables(layout: Layout, outputs: Iterable[tuple[str, DataFrame]]) -> None:
    """Each (table name, rows) registered table created empty with the rows' schema if it
    does not exist yet, so streams reading it can start before its writer's first batch."""
    from delta.tables import DeltaTable

    for name, df in outputs:
        table = layout.registry.table(name)
        path = layout.table(table)
        if not DeltaTable.isDeltaTable(df.sparkSession, path):
            df.limit(0).write.format("delta").mode("append").partitionBy(*table.partitions).save(
                path
            )
