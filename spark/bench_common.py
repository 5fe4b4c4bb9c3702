"""Machinery the streaming benchmarks share (spark/jobs/activity/bench.py,
spark/jobs/orders/bench.py), so each bench holds only its input and its variants.

- Input: a generated Arrow table written as one Parquet file per micro-batch, read back as
  a file stream with maxFilesPerTrigger=1, so every variant sees the same batches.
- One run: a variant's query into Spark's `noop` sink with availableNow (rows are produced,
  then dropped, so no variant pays for writing output the others do not write), timed by
  Spark's own progress reports.
- The steady rate: rows of the micro-batches with data after the first, divided by their
  time (triggerExecution). The first pays Python worker and RocksDB start-up; the no-data
  batch availableNow ends with (closing on the last watermark) is left out too, as a
  running stream has none while data comes.
- Repeats interleaved (every variant once, then again), so machine noise spreads over the
  variants alike; a figure is the median over the repeats.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

K = TypeVar("K", bound=Hashable)


def write_batches(folder: Path, table: pa.Table, batch_rows: int) -> int:
    """One Parquet file of `batch_rows` rows per micro-batch, in the table's order (mtimes
    1 s apart, so the file source takes them in that order); returns the number of files."""
    folder.mkdir(parents=True)
    rows = table.num_rows
    stamp = time.time() - rows // batch_rows - 10
    files = 0
    for number, offset in enumerate(range(0, rows, batch_rows)):
        path = folder / f"part-{number:05d}.parquet"
        pq.write_table(table.slice(offset, batch_rows), path)
        os.utime(path, (stamp + number, stamp + number))
        files += 1
    return files


def file_stream(spark: SparkSession, schema: StructType, folder: Path) -> DataFrame:
    """The files of `folder` as a stream, one file per micro-batch."""
    return spark.readStream.schema(schema).option("maxFilesPerTrigger", "1").parquet(str(folder))


def steady(progress: list[dict]) -> tuple[int, float]:
    """Rows and seconds of the micro-batches with data after the first."""
    rest = [p for p in progress if p["numInputRows"]][1:]
    seconds = sum(p["durationMs"]["triggerExecution"] for p in rest) / 1000
    return sum(p["numInputRows"] for p in rest), seconds


def observed(progress: list[dict], name: str) -> dict[str, int]:
    """The metrics a query's `observe(name, ...)` reported, summed over its micro-batches
    (a batch without output reports none)."""
    totals: dict[str, int] = {}
    for p in progress:
        row = (p.get("observedMetrics") or {}).get(name)
        if row is None:
            continue
        values = row.asDict() if hasattr(row, "asDict") else dict(row)  # a Row, or JSON's dict
        for metric, value in values.items():
            totals[metric] = totals.get(metric, 0) + int(value or 0)
    return totals


def run_to_noop(
    frame: DataFrame, checkpoint: Path, *, name: str, output_mode: str = "append"
) -> dict:
    """Run `frame` (a streaming query) into the noop sink until its input is consumed; its
    steady rate and what it did. `progress` holds Spark's reports, for bench-specific
    checks."""
    began = time.monotonic()
    query = (
        frame.writeStream.format("noop")
        .outputMode(output_mode)
        .option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    if query.exception():
        raise RuntimeError(f"{name} failed: {query.exception()}")
    progress = query.recentProgress
    rows, seconds = steady(progress)
    shutil.rmtree(checkpoint, ignore_errors=True)
    return {
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "batches": sum(1 for p in progress if p["numInputRows"]),
        "no_data_batches": sum(1 for p in progress if not p["numInputRows"]),
        "rows_in": sum(p["numInputRows"] for p in progress),
        "rows_out": sum(p["sink"].get("numOutputRows", -1) for p in progress),
        "wall_s": time.monotonic() - began,
        "progress": progress,
    }


def interleaved(
    plan: Sequence[K],
    repeat: int,
    run_once: Callable[[K, str], dict],
    label: Callable[[K], str],
    log: Callable[[str], object] = print,
    check: Callable[[K, dict], None] | None = None,
) -> dict[K, list[dict]]:
    """run_once(key, tag) for every key of `plan`, `repeat` times over, interleaved (`tag`
    is the attempt, for a checkpoint name); each key's results in run order. `check(key,
    result)` runs after a run is logged and raises if its output is wrong."""
    results: dict[K, list[dict]] = {key: [] for key in plan}
    for attempt in range(repeat):
        for key in plan:
            result = run_once(key, str(attempt))
            log(
                f"  run {attempt + 1}/{repeat} {label(key)}: "
                f"{result['rows_per_s']:,.0f} rows/s, {result['batches']} batches "
                f"+ {result['no_data_batches']} without data, {result['rows_out']:,} rows out, "
                f"{result['wall_s']:.1f} s"
            )
            if check is not None:
                check(key, result)
            results[key].append(result)
    return results


def medians(results: dict[K, list[dict]], figure: str = "rows_per_s") -> dict[K, float]:
    """Per key, the median of one figure over its runs."""
    return {key: statistics.median(r[figure] for r in runs) for key, runs in results.items()}
