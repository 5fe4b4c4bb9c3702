"""The market-data driver: bronze (Kafka -> Delta) and silver enrichment in one Spark app.

Both queries run in one driver so each Delta table has exactly one writer (ARCHITECTURE.md
§3). `--once` drains what is in Kafka now (bronze, then silver) and exits; without it the
queries run until stopped (SIGTERM stops them between micro-batches).

    python -m spark.jobs.market_pipeline --once
    python -m spark.jobs.market_pipeline --interval 5
"""

from __future__ import annotations

import json
import logging
import signal
from dataclasses import dataclass

import typer

from lakehouse.process import port_in_use
from lakehouse.registry import STREAM_JOBS
from lakehouse.settings import Settings, load_settings
from lakehouse.supervision import DriverAlreadyRunning, hold_driver_lock

log = logging.getLogger("market_pipeline")


def _require_services(settings: Settings) -> None:
    needed = {
        "Kafka": (settings.kafka_host, settings.kafka_port),
        "S3": (settings.s3_host, settings.s3_port),
        "Postgres": (settings.postgres_host, settings.postgres_port),
    }
    for name, (host, port) in needed.items():
        if not port_in_use(host, port):
            typer.echo(f"{name} is not reachable at {host}:{port}: start the platform (make up).")
            raise typer.Exit(2)


def summary(query) -> dict:
    """What one query did in this run, for logs and reconciliation (the same per-batch
    figures the progress listener stores)."""
    from spark.progress import progress_row

    batches = [progress_row(p) for p in query.recentProgress]
    return {
        "query": query.name,
        "batches": len(batches),
        "last_batch": batches[-1]["batch_id"] if batches else None,
        "input_rows": sum(b["input_rows"] for b in batches),
        "rows_dropped_by_watermark": sum(b["rows_dropped_by_watermark"] for b in batches),
    }


def _check_delay(value: str) -> str:
    from spark.jobs.trade_enrichment.job import watermark_delay_ms

    try:
        watermark_delay_ms(value)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    return value


def main(
    once: bool = typer.Option(False, "--once", help="process what is available now, then exit"),
    interval: float = typer.Option(5.0, min=0.0, help="seconds between micro-batches"),
    master: str = typer.Option("", help="Spark master; default: the configured one"),
    buckets: int = typer.Option(16, min=1, help="symbol hash buckets of the stateful step"),
    watermark: str = typer.Option(
        "10 seconds", help="how late a reference or trade may be", callback=_check_delay
    ),
    max_offsets: int = typer.Option(0, min=0, help="Kafka records per micro-batch (0: all)"),
    namespace: str = typer.Option(
        "", help="run on isolated topics and tables suffixed with this (tests, replays)"
    ),
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = load_settings()
    _require_services(settings)
    job_key = STREAM_JOBS["market_pipeline"].key(namespace)
    try:
        with hold_driver_lock(settings, job_key):
            run(
                settings,
                job_key,
                RunOptions(once, interval, master, buckets, watermark, max_offsets, namespace),
            )
    except DriverAlreadyRunning as error:
        typer.echo(f"{error}: not starting a second driver (stop it first).")
        raise typer.Exit(3) from None


@dataclass(frozen=True)
class RunOptions:
    once: bool
    interval: float
    master: str
    buckets: int
    watermark: str
    max_offsets: int
    namespace: str


def run(settings: Settings, job_key: str, options: RunOptions) -> None:
    """Both queries (and the maintenance worker) in this driver, while it holds its lock."""
    from spark.jobs import market_bronze
    from spark.jobs.market_layout import MarketLayout
    from spark.jobs.trade_enrichment import job as enrichment
    from spark.maintenance import MaintenanceWorker
    from spark.progress import PostgresProgressListener
    from spark.session import build_spark_session

    layout = (
        MarketLayout.isolated(settings, options.namespace)
        if options.namespace
        else MarketLayout.default(settings)
    )
    spark = build_spark_session("market_pipeline", settings, master=options.master or None)
    trigger = (
        {"availableNow": True}
        if options.once
        else {"processingTime": f"{options.interval} seconds"}
    )
    started = []
    spark.streams.addListener(PostgresProgressListener(settings, job_key))
    market_bronze.ensure_tables(spark, layout)
    # OPTIMIZE/VACUUM of this driver's tables run here, under the writers' locks.
    maintenance = MaintenanceWorker(
        spark,
        settings,
        job_key,
        {t.name: (t, layout.table(t.name)) for t in STREAM_JOBS["market_pipeline"].tables()},
    )

    def start_bronze():
        query = market_bronze.start(
            spark, settings, layout, trigger=trigger, max_offsets=options.max_offsets or None
        )
        started.append(query)
        return query

    def start_silver():
        query = enrichment.start(
            spark, layout, trigger=trigger, buckets=options.buckets, watermark=options.watermark
        )
        started.append(query)
        return query

    def stop(*_):
        log.info("stopping %d queries", len(started))
        maintenance.stop()
        for query in started:
            query.stop()

    signal.signal(signal.SIGTERM, stop)
    try:
        if options.once:
            # Silver reads bronze: drain bronze first so silver sees all of it.
            report = {}
            for begin in (start_bronze, start_silver):
                query = begin()
                query.awaitTermination()
                if query.exception():
                    raise RuntimeError(f"{query.name} failed: {query.exception()}")
                report[query.name] = summary(query)
                log.info("done %s", json.dumps(report[query.name]))
            print(json.dumps(report), flush=True)
        else:
            start_bronze()
            start_silver()
            maintenance.start()
            spark.streams.awaitAnyTermination()
            for query in started:
                if query.exception():
                    raise RuntimeError(f"{query.name} failed: {query.exception()}")
    finally:
        stop()
        spark.stop()


if __name__ == "__main__":
    typer.run(main)
