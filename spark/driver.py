"""The streaming driver: runs the queries of one registered job, written once for every
pipeline (docs/architecture.md, "The driver").

A pipeline only says which queries it starts (its QueryFactory, declared in the registry as
`Pipeline.queries`). This runner does the rest: the job's lock in Postgres (a second driver
exits with code 3), the Spark session, the progress listener (heartbeats, stream_progress),
the maintenance worker (OPTIMIZE/VACUUM of the job's tables between commits), SIGTERM
(queries stop between micro-batches) and a JSON summary per query.

    python -m spark.driver --job market_pipeline [--once] [--interval 5] [--namespace NS]
        [--param market.watermark='10 seconds'] [--max-offsets N] [--master local[2]]

`--once` drains what is available now, query by query in the order the pipelines give
(bronze before the silver that reads it), then exits. Exit codes: 0 done, 1 a query failed,
2 a wrong argument or a service down (one sentence says which), 3 already running.
"""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import typer

from lakehouse.drivers import DriverAlreadyRunning, hold_driver_lock
from lakehouse.kit import Pipeline, StreamJob, resolve
from lakehouse.layout import InvalidNamespace, Layout
from lakehouse.process import port_in_use
from lakehouse.registry import RegistryError, load_registry
from lakehouse.settings import Settings, load_settings
from spark.kafka_offsets import is_data_loss

log = logging.getLogger("driver")


@dataclass(frozen=True)
class DriverContext:
    """What a pipeline's queries get from the driver."""

    spark: Any  # SparkSession
    settings: Settings
    layout: Layout
    job_key: str
    trigger: dict
    max_offsets: int | None  # records per micro-batch from a Kafka source (None: all)


Starter = Callable[[], Any]  # starts one streaming query, returns the StreamingQuery


class QueryFactory(Protocol):
    """A pipeline's queries. Constructed before Spark starts, so a bad parameter is refused
    in one sentence (ValueError) without a JVM."""

    def __init__(self, params: dict[str, str]) -> None: ...

    def prepare(self, ctx: DriverContext) -> None:
        """Create the tables its readers need before the first batch."""

    def starters(self, ctx: DriverContext) -> list[Starter]:
        """Its queries, in the order a drain (--once) must run them."""
        ...


def load_factory(pipeline: Pipeline, params: dict[str, str]) -> QueryFactory:
    return resolve(pipeline.queries)(params)


def parse_params(values: list[str], pipelines: tuple[Pipeline, ...]) -> dict[str, dict[str, str]]:
    """'pipeline.name=value' pairs, over the pipelines' declared defaults."""
    params = {p.name: dict(p.params) for p in pipelines}
    for value in values:
        key, equals, setting = value.partition("=")
        pipeline, dot, name = key.partition(".")
        if not equals or not dot or pipeline not in params:
            raise ValueError(
                f"--param {value!r} is not pipeline.name=value for a pipeline of this job "
                f"({', '.join(params)})"
            )
        params[pipeline][name] = setting
    return params


def require_services(settings: Settings) -> None:
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
        "duplicates_dropped": sum(b["duplicates_dropped"] for b in batches),
    }


@dataclass(frozen=True)
class RunOptions:
    once: bool
    interval: float | None  # None: each pipeline's own (Pipeline.trigger_interval)
    master: str
    max_offsets: int

    def trigger(self, pipeline: Pipeline, settings: Settings) -> dict:
        if self.once:
            return {"availableNow": True}
        interval = pipeline.trigger_interval(settings) if self.interval is None else self.interval
        return {"processingTime": f"{interval} seconds"}


def run(
    settings: Settings,
    job: StreamJob,
    layout: Layout,
    factories: list[QueryFactory],
    options: RunOptions,
) -> dict:
    """The job's queries and its maintenance worker, while this process holds the lock.
    Returns the per-query summary of a drain (empty for a long-running stream)."""
    from spark.maintenance import MaintenanceWorker
    from spark.progress import PostgresProgressListener
    from spark.session import build_spark_session

    job_key = job.key(layout.namespace)
    spark = build_spark_session(job.name, settings, master=options.master or None)
    # Each pipeline's factory with its context (the contexts differ in their trigger).
    hosted = [
        (
            factory,
            DriverContext(
                spark,
                settings,
                layout,
                job_key,
                options.trigger(pipeline, settings),
                options.max_offsets or None,
            ),
        )
        for pipeline, factory in zip(job.pipelines, factories, strict=True)
    ]
    spark.streams.addListener(PostgresProgressListener(settings, job_key))
    for factory, ctx in hosted:
        factory.prepare(ctx)
    # OPTIMIZE/VACUUM of this driver's tables run here, under the writers' locks.
    maintenance = MaintenanceWorker(
        spark,
        settings,
        job_key,
        {t.name: (t, layout.table(t)) for t in job.tables()},
        layout.checkpoint_root,
    )
    starters = [starter for factory, ctx in hosted for starter in factory.starters(ctx)]
    started = []

    def stop(*_) -> None:
        log.info("stopping %d queries", len(started))
        maintenance.stop()
        for query in started:
            query.stop()

    signal.signal(signal.SIGTERM, stop)
    report: dict = {}
    try:
        if options.once:
            for start in starters:
                query = start()
                started.append(query)
                query.awaitTermination()
                if query.exception():
                    raise RuntimeError(f"{query.name} failed: {query.exception()}")
                report[query.name] = summary(query)
                log.info("done %s", json.dumps(report[query.name]))
        else:
            started.extend(start() for start in starters)
            maintenance.start()
            spark.streams.awaitAnyTermination()
            for query in started:
                if query.exception():
                    raise RuntimeError(f"{query.name} failed: {query.exception()}")
    finally:
        stop()
        spark.stop()
    return report


def main(
    job: str = typer.Option(..., help="a registered streaming job"),
    once: bool = typer.Option(False, "--once", help="process what is available now, then exit"),
    interval: float | None = typer.Option(
        None,
        min=0.0,
        help="seconds between micro-batches of every query; default: each pipeline's own "
        "(its declared trigger_s, else settings.stream_trigger_s)",
    ),
    master: str = typer.Option("", help="Spark master; default: the configured one"),
    max_offsets: int = typer.Option(0, min=0, help="Kafka records per micro-batch (0: all)"),
    param: list[str] = typer.Option([], help="a pipeline's parameter: pipeline.name=value"),
    namespace: str = typer.Option(
        "", help="run on isolated topics and tables suffixed with this (tests, replays)"
    ),
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = load_settings()
    try:
        layout = Layout(settings, namespace)
        stream_job = load_registry(settings).job(job)
        params = parse_params(param, stream_job.pipelines)
        factories = [load_factory(p, params[p.name]) for p in stream_job.pipelines]
    except (InvalidNamespace, RegistryError, ValueError) as error:
        typer.echo(f"{error}.")
        raise typer.Exit(2) from None
    require_services(settings)
    try:
        with hold_driver_lock(settings, stream_job.key(namespace)):
            options = RunOptions(once, interval, master, max_offsets)
            report = run(settings, stream_job, layout, factories, options)
    except DriverAlreadyRunning as error:
        typer.echo(f"{error}: not starting a second driver (stop it first).")
        raise typer.Exit(3) from None
    except RuntimeError as error:
        if not is_data_loss(error):
            raise
        typer.echo(
            f"{str(error).splitlines()[0]}\n{job}: Kafka no longer holds offsets this job had "
            "not read (retention deleted them, or a topic was recreated). Nothing was "
            "skipped. To go on without them, set LAKEHOUSE_KAFKA_FAIL_ON_DATA_LOSS=false "
            "(the skipped offsets are then counted in stream_progress), or raise the "
            "topic's retention.ms."
        )
        raise typer.Exit(1) from None
    if once:
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    typer.run(main)
