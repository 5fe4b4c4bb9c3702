"""Benchmark of the Postgres sync against a raw COPY of the same rows, in the same run.

A silver-shaped Delta table of `rows` trades (local disk) is synced into a fresh Postgres
schema by the real sync (change feed read, staging COPY, ON CONFLICT insert, one-minute
bars, progress) in one range. The baseline COPYs the same rows, already as CSV in memory,
into an empty table with the same primary key: the cheapest way to put them in Postgres.
"""

from __future__ import annotations

import shutil
import time

import psycopg
from pyspark.sql import SparkSession

from lakehouse.settings import Settings
from spark.bench.analytics import write_lake
from spark.jobs import postgres_sync

SCHEMA = "bench_sync"


def run(spark: SparkSession, settings: Settings, *, rows: int, log=print) -> dict:
    root = settings.home / "bench" / f"sync-{rows}"
    shutil.rmtree(root, ignore_errors=True)
    log(f"writing {rows:,} silver trades")
    write_lake(spark, root, rows, symbols=500)
    path = str(root / "silver" / "trades_enriched")
    with psycopg.connect(settings.postgres_dsn(), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")

    log("sync (one range)")
    report = postgres_sync.sync(spark, settings, path, SCHEMA, max_versions=1_000_000)
    sync_s = report["seconds"]

    log("baseline: COPY of the same rows")
    csv, copied = postgres_sync.to_csv(
        spark.read.format("delta").load(path).select(*postgres_sync.COLUMNS)
    )
    with psycopg.connect(settings.postgres_dsn()) as conn:
        conn.execute(
            f"CREATE TABLE {SCHEMA}.copy_baseline (LIKE {SCHEMA}.trades_enriched"
            " INCLUDING CONSTRAINTS INCLUDING INDEXES)"
        )
        conn.commit()
        began = time.perf_counter()
        with conn.cursor().copy(
            f"COPY {SCHEMA}.copy_baseline ({', '.join(postgres_sync.COLUMNS)})"
            " FROM STDIN (FORMAT csv, HEADER true)"
        ) as copy:
            copy.write(csv)
        conn.commit()
        copy_s = time.perf_counter() - began
    with psycopg.connect(settings.postgres_dsn(), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
    shutil.rmtree(root, ignore_errors=True)
    if not report["rows_inserted"] == rows == copied:
        raise RuntimeError(f"sync inserted {report['rows_inserted']}, COPY {copied} of {rows}")
    return {
        "benchmark": "sync",
        "rows": rows,
        "sync_s": round(sync_s, 2),
        "copy_s": round(copy_s, 2),
        "sync_rows_per_s": round(rows / sync_s),
        "copy_rows_per_s": round(rows / copy_s),
        "sync_vs_copy": round(copy_s / sync_s, 3),
    }
