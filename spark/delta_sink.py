"""Delta reads and writes shared by the streaming jobs."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, SparkSession

from spark.checkpoints import sink_identity

if TYPE_CHECKING:
    from lakehouse.layout import Layout

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
def persisted(df: DataFrame) -> Iterator[DataFrame]:
    """Keep a micro-batch cached while several writes read it, then release it.

    Computed here, not by the first write: when a batch is replayed after a crash, Delta
    skips writes it already committed without running their plan, and then the stateful
    operator would not run either. Spark takes the next watermark and the late-row counts
    from this execution; the enrichment releases trades on the strength of that watermark.
    """
    df.persist()
    try:
        df.count()
        yield df
    finally:
        df.unpersist()


def append_exactly_once(
    df: DataFrame, path: str, writer_id: str, batch_id: int, partitions: tuple[str, ...] = ()
) -> None:
    """Append with Delta's idempotent-writer options: a replayed (writer, batch) is skipped.

    foreachBatch may run a batch again after a crash; Delta records (txnAppId, txnVersion)
    in the same commit as the data, so the second write of the same batch is a no-op.
    `writer_id` must change when batch ids start again (a new checkpoint): see
    `append_to_tables`.
    """
    writer = (
        df.write.format("delta")
        .mode("append")
        .option("txnAppId", writer_id)
        .option("txnVersion", str(batch_id))
    )
    if partitions:
        writer = writer.partitionBy(*partitions)
    writer.save(path)


def append_to_tables(
    layout: Layout, outputs: Iterable[tuple[str, DataFrame]], query: str, batch_id: int
) -> None:
    """Each (table name, rows) of one micro-batch of `query` appended exactly once to that
    registered table, at the layout's path and with its declared partitions.

    The Delta writer id is the query's name with its checkpoint's query id: a deleted or
    reset checkpoint numbers its batches from 0 again, and under the bare name Delta would
    take them for batches it already has and drop them without a word.
    """
    writer_id = sink_identity(query, layout.checkpoint(query))
    for name, df in outputs:
        table = layout.registry.table(name)
        append_exactly_once(df, layout.table(table), writer_id, batch_id, table.partitions)


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
