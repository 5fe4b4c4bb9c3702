"""Benchmark of compaction: one day of one-minute micro-batch files, before and after OPTIMIZE.

A Delta table on the S3 server gets one date partition written as 1,440 files (one per
minute, as a stream with a one-minute trigger leaves them). The same DuckDB aggregate reads
it through the Delta log before and after `optimize_closed_partitions`; the figure is the
ratio of the two medians, measured in the same run.
"""

from __future__ import annotations

import statistics
import time
from datetime import date

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.duck import lake_connection
from lakehouse.settings import Settings
from spark.jobs.market.bench.enrichment import generate_trades
from spark.maintenance import files_per_partition, optimize_closed_partitions

MINUTES_PER_DAY = 1440
QUERY = """
SELECT symbol, count(*) AS trades, sum(volume) AS volume,
       sum(price * volume) / sum(volume) AS vwap, max(price) - min(price) AS range
FROM delta_scan('{path}') GROUP BY symbol
"""


def _median_query_s(settings: Settings, path: str, repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        con = lake_connection(settings)  # a fresh connection: no cached metadata or files
        began = time.perf_counter()
        con.execute(QUERY.format(path=path)).fetchall()
        timings.append(time.perf_counter() - began)
        con.close()
    return statistics.median(timings)


def _delete_prefix(settings: Settings, path: str) -> None:
    """The bench leaves nothing in the lake."""
    from infra.s3 import s3_client

    client = s3_client(settings)
    prefix = path.split(f"{settings.s3_bucket}/", 1)[1] + "/"
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=settings.s3_bucket, Prefix=prefix
    ):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=settings.s3_bucket, Delete={"Objects": keys})


def run(spark: SparkSession, settings: Settings, *, rows: int, repeat: int = 3, log=print) -> dict:
    path = f"{settings.lake_uri}/bench/compaction-{int(time.time())}"
    duck_path = path.replace("s3a://", "s3://", 1)
    log(f"writing {rows:,} trades as {MINUTES_PER_DAY} one-minute files to {path}")
    day = generate_trades(spark, rows, 500, seed=5).withColumn(
        "event_time",
        F.timestamp_seconds(F.lit(1_767_225_600) + F.pmod(F.col("kafka_offset"), F.lit(86_400))),
    )
    (
        day.withColumn("event_date", F.to_date("event_time"))
        .repartitionByRange(MINUTES_PER_DAY, "event_time")
        .write.format("delta")
        .partitionBy("event_date")
        .save(path)
    )
    files_before = sum(files_per_partition(spark, path, "event_date", date.today()).values())
    log(f"{files_before} files; DuckDB aggregate before OPTIMIZE")
    query_s_before = _median_query_s(settings, duck_path, repeat)
    log("OPTIMIZE")
    began = time.perf_counter()
    optimized = optimize_closed_partitions(spark, path, "event_date", date.today())
    optimize_s = time.perf_counter() - began
    files_after = sum(files_per_partition(spark, path, "event_date", date.today()).values())
    log(f"{files_after} files; DuckDB aggregate after OPTIMIZE")
    query_s_after = _median_query_s(settings, duck_path, repeat)
    _delete_prefix(settings, path)
    return {
        "benchmark": "compaction",
        "rows": rows,
        "files_before": files_before,
        "files_after": files_after,
        "files_removed": optimized["files_removed"],
        "optimize_s": round(optimize_s, 2),
        "query_s_before": round(query_s_before, 3),
        "query_s_after": round(query_s_after, 3),
        "speedup": round(query_s_before / query_s_after, 2),
    }
