"""Smoke job: write a Delta table to the lake, read it back, print a JSON report.

Used by tests and by operators to check a Spark master end to end:
    python -m spark.jobs.smoke --master spark://127.0.0.1:17077 --rows 1000
"""

from __future__ import annotations

import json
import uuid

import typer
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.settings import load_settings
from spark.session import build_spark_session


def extract(spark: SparkSession, rows: int) -> DataFrame:
    return spark.range(rows)


def transform(df: DataFrame) -> DataFrame:
    return df.select(F.col("id").alias("n"), (F.col("id") % 7).alias("bucket"))


def load(df: DataFrame, path: str) -> None:
    df.write.format("delta").mode("overwrite").save(path)


def main(
    master: str = typer.Option("", help="Spark master; default: the configured one"),
    rows: int = typer.Option(1000, min=1),
) -> None:
    settings = load_settings()
    spark = build_spark_session("smoke", settings, master=master or None)
    path = f"{settings.lake_uri}/smoke/{uuid.uuid4().hex}"
    try:
        load(transform(extract(spark, rows)), path)
        back = spark.read.format("delta").load(path)
        report = {
            "master": spark.sparkContext.master,
            "path": path,
            "rows_written": rows,
            "rows_read": back.count(),
            "distinct_n": back.select("n").distinct().count(),
            # the driver counts as one entry of the block-manager map
            "executors": spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1,
        }
    finally:
        spark.stop()
    print(json.dumps(report))


if __name__ == "__main__":
    typer.run(main)
