"""Replay: rebuild silver `trades_enriched` for event times >= a given time from bronze.

Runs as the market pipeline's driver would: it takes the pipeline's driver lock, so it is
the tables' only writer and needs the stream stopped (`lakehouse replay` and the `replay`
DAG stop it and start it again).

The range is bounded by what the stream has finished: trades below the enrichment query's
last committed watermark, read from the bronze versions that query had consumed. Newer
trades are still held in the stream's state; it emits them itself after the restart.

extract: bronze trades in [from, until) and every reference before `until`, at those
  versions (time travel: a replay reads the same input however much bronze grew since).
transform: the enrichment's union, the pure `state.replay` per symbol bucket: every trade once
  (first copy in Kafka order), as of the reference valid at its event time.
load: one Delta commit replacing the range (replaceWhere), so a replay is all or nothing,
  and replaying twice gives the same rows (`enriched_at` says when a row was written).

Unlike the stream, a replay also enriches trades the stream dropped as late and uses late
reference updates: the answer is the as-of join over all of bronze, whatever the arrival
order. Without late data the rows equal the stream's.

    python -m spark.jobs.market.replay --from 2026-01-01T00:00:00Z [--namespace NS]
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import typer
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.drivers import DriverAlreadyRunning, hold_driver_lock
from lakehouse.layout import InvalidNamespace, Layout
from lakehouse.replay import check_request
from lakehouse.settings import load_settings
from spark.jobs.market.trade_enrichment import job as enrichment
from spark.jobs.market.trade_enrichment import state

log = logging.getLogger("replay")


class ReplayError(RuntimeError):
    pass


@dataclass(frozen=True)
class Bounds:
    """What the enrichment query had finished when it stopped."""

    until_ms: int  # its last committed watermark: every older trade has left its state
    trades_version: int  # bronze versions it had consumed
    references_version: int


# ---- extract ----------------------------------------------------------------------


def consumed_version(source_offset: dict) -> int:
    """The last bronze version a Delta source offset says was read in full."""
    if source_offset["index"] == -1 and not source_offset.get("isStartingVersion", False):
        return source_offset["reservoirVersion"] - 1
    raise ReplayError(
        f"the enrichment stream stopped inside version {source_offset['reservoirVersion']} "
        "of a bronze table: start it, let it catch up, and replay again"
    )


def read_bounds(spark: SparkSession, layout: Layout) -> Bounds:
    """From the enrichment checkpoint's last committed batch (offsets/N with commits/N)."""
    from delta.tables import DeltaTable

    checkpoint = Path(layout.checkpoint(enrichment.QUERY_NAME))
    committed = sorted(
        int(p.name) for p in (checkpoint / "commits").glob("[0-9]*") if p.name.isdigit()
    )
    if not committed:
        raise ReplayError(
            f"the enrichment stream has not committed a batch yet ({checkpoint}): "
            "there is nothing to replay"
        )
    lines = (checkpoint / "offsets" / str(committed[-1])).read_text().splitlines()
    metadata, sources = json.loads(lines[1]), [json.loads(line) for line in lines[2:]]
    by_table_id = {s["reservoirId"]: s for s in sources}

    def version_of(table: str) -> int:
        table_id = DeltaTable.forPath(spark, layout.table(table)).detail().first()["id"]
        if table_id not in by_table_id:
            raise ReplayError(f"the enrichment checkpoint does not read {table}")
        return consumed_version(by_table_id[table_id])

    return Bounds(
        until_ms=metadata["batchWatermarkMs"],
        trades_version=version_of("bronze_trades"),
        references_version=version_of("bronze_company_reference"),
    )


def extract(
    spark: SparkSession, layout: Layout, from_ms: int, bounds: Bounds
) -> tuple[DataFrame, DataFrame]:
    def bronze(table: str, version: int) -> DataFrame:
        return spark.read.format("delta").option("versionAsOf", version).load(layout.table(table))

    until = F.timestamp_millis(F.lit(bounds.until_ms))
    trades = bronze("bronze_trades", bounds.trades_version).where(
        (F.col("event_time") >= F.timestamp_millis(F.lit(from_ms))) & (F.col("event_time") < until)
    )
    references = bronze("bronze_company_reference", bounds.references_version).where(
        F.col("event_time") < until
    )
    return trades, references


# ---- transform --------------------------------------------------------------------


def _replay_bucket(batch: pd.DataFrame) -> pd.DataFrame:
    ordered = batch.sort_values(["kafka_partition", "kafka_offset"], kind="stable")
    return state.replay(ordered[list(state.INPUT_COLUMNS)])[
        list(enrichment.OUTPUT_SCHEMA.fieldNames())
    ]


def transform(trades: DataFrame, references: DataFrame, *, buckets: int) -> DataFrame:
    """The stateful operator's output (statuses enriched/duplicate) for the whole range."""
    events = (
        enrichment.union_events(trades, references)
        .withColumn("event_time_ms", F.unix_millis("event_time"))
        .withColumn("bucket", F.pmod(F.xxhash64("symbol"), F.lit(buckets)))
    )
    return events.groupBy("bucket").applyInPandas(_replay_bucket, enrichment.OUTPUT_SCHEMA)


# ---- load -------------------------------------------------------------------------


def replace_predicate(from_ms: int, until_ms: int) -> str:
    first_day = datetime.fromtimestamp(from_ms / 1000, UTC).date().isoformat()
    # The event_date term lets Delta skip whole partitions before the range.
    return (
        f"event_date >= DATE'{first_day}' AND event_time >= timestamp_millis({from_ms})"
        f" AND event_time < timestamp_millis({until_ms})"
    )


def load(silver: DataFrame, path: str, predicate: str) -> None:
    silver.write.format("delta").mode("overwrite").option("replaceWhere", predicate).save(path)


def replay(spark: SparkSession, layout: Layout, from_ms: int, *, buckets: int) -> dict:
    from delta.tables import DeltaTable

    bounds = read_bounds(spark, layout)
    report = {"from_ms": from_ms, **asdict(bounds)}
    if from_ms >= bounds.until_ms:
        log.info("nothing to replay: %s is not before the stream's watermark", from_ms)
        return {**report, "rows_written": 0, "duplicates": 0, "silver_version": None}
    trades, references = extract(spark, layout, from_ms, bounds)
    output = transform(trades, references, buckets=buckets).persist()
    try:
        counts = {r["status"]: r["count"] for r in output.groupBy("status").count().collect()}
        silver, _ = enrichment.split_output(output)
        path = layout.table("trades_enriched")
        load(silver, path, replace_predicate(from_ms, bounds.until_ms))
    finally:
        output.unpersist()
    commit = DeltaTable.forPath(spark, path).history(1).first()
    metrics = commit["operationMetrics"] or {}
    return {
        **report,
        "trades_read": sum(counts.values()),
        "rows_written": counts.get("enriched", 0),
        "duplicates": counts.get("duplicate", 0),
        "rows_replaced": int(metrics.get("numDeletedRows", 0) or 0),
        "silver_version": commit["version"],
    }


def main(
    from_time: str = typer.Option(..., "--from", help="first event time to rebuild (ISO-8601)"),
    table: str = typer.Option("trades_enriched", help="the table to rebuild"),
    namespace: str = typer.Option("", help="replay an isolated run's tables"),
    buckets: int = typer.Option(enrichment.DEFAULT_BUCKETS, min=1, help="symbol hash buckets"),
    master: str = typer.Option("", help="Spark master; default: the configured one"),
    report_file: Path | None = typer.Option(None, help="also write the JSON report here"),
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = load_settings()
    try:
        layout = Layout(settings, namespace)
        from_ms = check_request(layout.registry, table, from_time)
    except (InvalidNamespace, ValueError) as error:
        typer.echo(f"{error}.")
        raise typer.Exit(2) from None
    from spark.session import build_spark_session

    _, job = layout.registry.owner(table)
    job_key = job.key(namespace)
    try:
        with hold_driver_lock(settings, job_key):
            spark = build_spark_session("replay", settings, master=master or None)
            try:
                report = replay(spark, layout, from_ms, buckets=buckets)
            finally:
                spark.stop()
    except DriverAlreadyRunning as error:
        typer.echo(f"{error}: stop the stream first (lakehouse stream stop).")
        raise typer.Exit(3) from None
    except ReplayError as error:
        typer.echo(f"replay refused: {error}.")
        raise typer.Exit(2) from None
    log.info("replayed: %s", json.dumps(report))
    print(json.dumps(report), flush=True)
    if report_file:
        report_file.write_text(json.dumps(report))


if __name__ == "__main__":
    typer.run(main)
