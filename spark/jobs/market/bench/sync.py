"""Benchmark of the Postgres sync against a raw COPY of the same rows, in the same run.

A silver-shaped Delta table of `rows` trades (local disk) is synced into a fresh Postgres
schema by the real sync (Delta read, COPY, one-minute bars, progress): the first run, from
the snapshot of version 0. Then version 1, as many trades of the next day, is synced: a
range read from the change data feed, as every later run is. Each baseline COPYs the same
rows, already as CSV in memory, into a table with the same keys and indexes holding what
the serving table held before that sync: the cheapest way to put them in Postgres.
Medians of `repeat` runs, each into a fresh schema.
"""

from __future__ import annotations

import shutil
import statistics
import time

import psycopg
from pyspark.sql import SparkSession

from lakehouse import serving_sync
from lakehouse.layout import Layout
from lakehouse.migrations import upgrade_layout
from lakehouse.pg_copy import csv_chunks
from lakehouse.pipelines.market import PIPELINE
from lakehouse.settings import Settings
from spark.jobs.market.bench.analytics import silver_trades, write_lake

SPEC = PIPELINE.serving[0]
COLUMNS = SPEC.columns


def _copy_baseline(settings: Settings, schema: str, rows) -> float:
    """Seconds to COPY `rows` (Arrow, the serving columns) into the baseline table."""
    csv = b"".join(csv_chunks(rows.select(list(COLUMNS))))
    with psycopg.connect(settings.postgres_dsn()) as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {schema}.copy_baseline (LIKE {schema}.trades_enriched"
            " INCLUDING CONSTRAINTS INCLUDING INDEXES)"
        )
        conn.commit()
        began = time.perf_counter()
        with conn.cursor().copy(
            f"COPY {schema}.copy_baseline ({', '.join(COLUMNS)}) FROM STDIN (FORMAT csv)"
        ) as copy:
            copy.write(csv)
        conn.commit()
        return time.perf_counter() - began


def _one_run(settings: Settings, layout: Layout, rows: int, versions: tuple[int, int]) -> dict:
    """Sync the snapshot of the first day, then the second day's version from the change
    feed, each against its baseline COPY."""
    schema, path = layout.serving_schema, layout.table(SPEC.source)
    with psycopg.connect(settings.postgres_dsn(), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    upgrade_layout(settings, layout)
    first_day, second_day = versions
    first = serving_sync.sync(settings, SPEC, layout, 1_000_000, until_version=first_day)
    copy_s = _copy_baseline(
        settings, schema, serving_sync.extract(settings, SPEC, path, None, first_day)
    )
    second = serving_sync.sync(settings, SPEC, layout, 1_000_000, until_version=second_day)
    appended = serving_sync.extract(settings, SPEC, path, first_day, second_day)
    incremental_copy_s = _copy_baseline(settings, schema, appended)
    for report in (first, second):
        if report["rows_inserted"] != rows:
            raise RuntimeError(f"sync inserted {report['rows_inserted']} of {rows} rows")
    return {
        "sync_s": first["seconds"],
        "copy_s": copy_s,
        "incremental_sync_s": second["seconds"],
        "incremental_copy_s": incremental_copy_s,
    }


def run(spark: SparkSession, settings: Settings, *, rows: int, repeat: int = 3, log=print) -> dict:
    root = settings.home / "bench" / f"sync-{rows}"
    shutil.rmtree(root, ignore_errors=True)
    log(f"writing {rows:,} silver trades, then {rows:,} more of the next day")
    write_lake(spark, settings, root, rows, symbols=500)
    layout = Layout(settings, "bench_sync", lake_root=str(root))
    path = layout.table(SPEC.source)
    silver_trades(spark, rows, symbols=500, day=1).write.format("delta").mode("append").save(path)
    runs = []
    for attempt in range(repeat):
        runs.append(_one_run(settings, layout, rows, versions=(0, 1)))
        timings = ", ".join(f"{key} {value:.2f}" for key, value in runs[-1].items())
        log(f"  run {attempt + 1}/{repeat}: {timings}")
    with psycopg.connect(settings.postgres_dsn(), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {layout.serving_schema} CASCADE")
    shutil.rmtree(root, ignore_errors=True)
    median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    return {
        "benchmark": "sync",
        "rows": rows,
        "repeat": repeat,
        **{key: round(value, 2) for key, value in median.items()},
        "sync_rows_per_s": round(rows / median["sync_s"]),
        "copy_rows_per_s": round(rows / median["copy_s"]),
        "sync_vs_copy": round(median["copy_s"] / median["sync_s"], 3),
        "incremental_sync_vs_copy": round(
            median["incremental_copy_s"] / median["incremental_sync_s"], 3
        ),
    }
