"""Benchmark of the CSV drops load against Spark's plain JDBC append, in the same run.

Both start from the same `rows` cleaned events, cached in Spark as the transform gives them,
and put them into a table with the same constraints:
- load: the pipeline's own `load_batch` (each partition COPYed into the staging table from
  its executor, then INSERT ... ON CONFLICT DO NOTHING into `user_events` with the ledger
  row, in one transaction);
- baseline: `DataFrame.write.jdbc(mode="append")` into a copy of `user_events`, Spark's
  defaults (one connection per partition, batches of 1,000 rows).
Runs alternate and each starts from a fresh serving schema; the figures are medians. Each
run also checks that the table holds every row once, and that loading the same batch again
adds nothing. Then the whole stream once: `files` CSV files on local disk, read, parsed,
cleaned and loaded by the pipeline's query (ingest_rows_per_s).
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.layout import Layout
from lakehouse.migrations import upgrade_layout
from lakehouse.pipelines.csv import COLUMNS, EVENT_TYPES, LOAD_QUERY
from lakehouse.settings import Settings
from spark.jobs.csv import load

NAMESPACE = "bench_csv"
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def uuid_shaped(hex32):
    """32 hex digits as 8-4-4-4-12: event ids look like the generator's (random UUIDs), so
    both sides insert keys in a random order into the index, as real drops make them."""
    parts = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
    return F.concat_ws("-", *(F.substring(hex32, start, length) for start, length in parts))


def cleaned_events(spark: SparkSession, rows: int) -> DataFrame:
    """`rows` records as the transform emits accepted rows (record = 'event')."""
    types = F.array(*(F.lit(t) for t in EVENT_TYPES))
    events = spark.range(rows).select(
        F.lit(load.EVENT).alias("record"),
        F.concat(
            F.lit("file:/bench/events-"), (F.col("id") % 20).cast("string"), F.lit(".csv")
        ).alias("source_file"),
        (F.col("id") + 2).cast("int").alias("line_number"),
        uuid_shaped(F.md5(F.col("id").cast("string"))).alias("event_id"),
        F.format_string("U%05d", F.col("id") % 5000).alias("user_id"),
        F.format_string("P%04d", F.col("id") % 200).alias("product_id"),
        F.element_at(types, (F.col("id") % 4 + 1).cast("int")).alias("event_type"),
        ((F.col("id") % 50_000) / 100 + 1).alias("product_price"),
        F.timestamp_millis(F.lit(START_MS) + F.col("id") * 100).alias("event_timestamp"),
    )
    missing = [f for f in load.RECORD_SCHEMA.fields if f.name not in events.columns]
    events = events.select(
        *events.columns, *(F.lit(None).cast(f.dataType).alias(f.name) for f in missing)
    )
    return events.withColumn("processed_at", F.current_timestamp())


def _fresh_schema(settings: Settings, layout: Layout) -> str:
    schema = layout.serving_schema
    with psycopg.connect(settings.postgres_dsn(), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    upgrade_layout(settings, layout)
    with psycopg.connect(settings.postgres_dsn(), autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {schema}.jdbc_user_events (LIKE {schema}.user_events INCLUDING ALL)"
        )
    return schema


def _count(settings: Settings, table: str) -> tuple[int, int]:
    with psycopg.connect(settings.postgres_dsn()) as conn:
        return conn.execute(f"SELECT count(*), count(DISTINCT event_id) FROM {table}").fetchone()


def _timed(work: Callable[[], object]) -> float:
    began = time.perf_counter()
    work()
    return time.perf_counter() - began


def _one_run(settings: Settings, layout: Layout, events: DataFrame, rows: int, run: int) -> dict:
    schema = _fresh_schema(settings, layout)
    sink = f"bench:{run}"
    load_s = _timed(lambda: load.load_batch(events, settings, schema, sink, 0))
    replayed = load.load_batch(events, settings, schema, sink, 0)  # the same batch again
    if replayed.applied or _count(settings, f"{schema}.user_events") != (rows, rows):
        raise AssertionError("the load did not write every row exactly once")
    jdbc_s = _timed(
        lambda: events.select(*load.EVENT_COLUMNS).write.jdbc(
            settings.jdbc_url,
            f"{schema}.jdbc_user_events",
            mode="append",
            properties={
                "user": settings.postgres_user,
                "password": settings.postgres_password or "",
                "driver": "org.postgresql.Driver",
            },
        )
    )
    if _count(settings, f"{schema}.jdbc_user_events") != (rows, rows):
        raise AssertionError("the JDBC append did not write every row once")
    return {"load_rows_per_s": rows / load_s, "jdbc_append_rows_per_s": rows / jdbc_s}


def _ingest(
    spark: SparkSession, settings: Settings, events: DataFrame, base: Path, files: int
) -> float:
    """Rows/s of the whole stream: `files` CSV files read, parsed, cleaned and loaded."""
    bench_settings = settings.model_copy(update={"csv_input": str(base)})
    layout = Layout(bench_settings, NAMESPACE)
    folder = Path(layout.folder(str(base)))
    shutil.rmtree(folder, ignore_errors=True)
    staging = folder.parent / f"{folder.name}-writing"
    shutil.rmtree(staging, ignore_errors=True)
    as_text = events.select(
        *COLUMNS[:5], F.date_format("event_timestamp", "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'")
    ).toDF(*COLUMNS)
    as_text.repartition(files).write.csv(str(staging), header=True)
    folder.mkdir(parents=True)
    for part in staging.glob("part-*.csv"):
        part.rename(folder / part.name)
    shutil.rmtree(staging)
    _fresh_schema(bench_settings, layout)
    shutil.rmtree(layout.checkpoint(LOAD_QUERY), ignore_errors=True)
    rows = events.count()
    began = time.perf_counter()
    query = load.start(
        spark, bench_settings, layout, trigger={"availableNow": True}, files_per_batch=files
    )
    query.awaitTermination()
    seconds = time.perf_counter() - began
    if _count(bench_settings, f"{layout.serving_schema}.user_events") != (rows, rows):
        raise AssertionError("the stream did not load every row exactly once")
    return rows / seconds


def run(
    spark: SparkSession,
    settings: Settings,
    *,
    rows: int,
    repeat: int,
    files: int,
    log: Callable[[str], None],
) -> dict:
    layout = Layout(settings, NAMESPACE)
    events = cleaned_events(spark, rows).cache()
    events.count()
    results = []
    for number in range(repeat):
        results.append(_one_run(settings, layout, events, rows, number))
        log(
            f"run {number + 1}/{repeat}: "
            + ", ".join(f"{k} {v:,.0f}" for k, v in results[-1].items())
        )
    load_rps = statistics.median(r["load_rows_per_s"] for r in results)
    jdbc_rps = statistics.median(r["jdbc_append_rows_per_s"] for r in results)
    ingest_rps = _ingest(spark, settings, events, settings.home / "bench" / "csv-input", files)
    log(f"the whole stream from {files} files: {ingest_rps:,.0f} rows/s")
    events.unpersist()
    return {
        "rows": rows,
        "repeat": repeat,
        "load_rows_per_s": round(load_rps),
        "jdbc_append_rows_per_s": round(jdbc_rps),
        "load_vs_jdbc_append": round(load_rps / jdbc_rps, 2),
        "goal_load_vs_jdbc_append": 3.0,
        "ingest_rows_per_s": round(ingest_rps),
        "ingest_files": files,
    }
