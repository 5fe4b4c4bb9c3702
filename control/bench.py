"""`lakehouse bench ...`: benchmarks that print JSON and keep it under bench-results/.

Figures are ratios against a baseline measured in the same run: these machines are shared
and noisy, so absolute numbers from different runs do not compare.
"""

from __future__ import annotations

import importlib
import json
import random
import statistics
import sys
import time
from pathlib import Path

import typer

from lakehouse.settings import PROJECT_ROOT, Settings, load_settings

bench_app = typer.Typer(
    help="Benchmarks (JSON results under bench-results/).", no_args_is_help=True
)
RESULTS_DIR = PROJECT_ROOT / "bench-results"


def emit(result: dict, name: str, as_json: bool, *, unprinted: tuple[str, ...] = ()) -> None:
    """Save the result as JSON; print it as one JSON line, or key by key without the keys in
    `unprinted` (long series kept for the file)."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    if as_json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            if key not in unprinted:
                print(f"{key:>28}: {value}")
        print(f"saved to {path}")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _with_spark(name: str, work, *, needs_platform: bool = False):
    """Run work(spark, settings) on a local[2] session (with the running platform's S3 and
    Postgres when the bench needs them)."""
    from spark.session import build_spark_session

    settings = load_settings()
    if needs_platform:
        require_platform(settings, name)
    spark = build_spark_session(
        f"bench-{name}", settings, master="local[2]", needs_lake=needs_platform
    )
    try:
        return work(spark, settings)
    finally:
        spark.stop()


def _enrichment(rows: int, symbols: int, repeat: int, buckets: int, as_json: bool) -> None:
    from spark.jobs.market.bench import enrichment

    result = _with_spark(
        "enrichment",
        lambda spark, settings: enrichment.run(
            spark,
            Path(settings.home) / "bench",
            rows=rows,
            symbols=symbols,
            repeat=repeat,
            buckets=buckets,
            log=_log,
        ),
    )
    emit(result, f"enrichment-{symbols}", as_json)


def _activity(
    rows: int, batch_rows: int, users: tuple[int, ...], repeat: int, buckets: int, as_json: bool
) -> None:
    from spark.jobs.activity import bench as activity

    result = _with_spark(
        "activity",
        lambda spark, settings: activity.run(
            spark,
            Path(settings.home) / "bench",
            rows=rows,
            batch_rows=batch_rows,
            users=users,
            repeat=repeat,
            buckets=buckets,
            log=_log,
        ),
    )
    emit(result, "activity", as_json)


def _orders(
    rows: int, batch_rows: int, orders_per_s: float, repeat: int, buckets: int, as_json: bool
) -> None:
    from spark.jobs.orders import bench as orders

    result = _with_spark(
        "orders",
        lambda spark, settings: orders.run(
            spark,
            Path(settings.home) / "bench",
            rows=rows,
            batch_rows=batch_rows,
            orders_per_s=orders_per_s,
            repeat=repeat,
            buckets=buckets,
            log=_log,
        ),
    )
    emit(result, "orders", as_json)


def _user_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise typer.BadParameter(f"{text!r} is not a list of user counts such as 10000,1000000")
    return counts


def ticker_queries(settings: Settings, lookups: int = 200) -> dict:
    """The dashboard's per-ticker query on built marts: p50 and p95 in ms."""
    from dashboard import queries

    timings = []
    with queries.marts(settings) as marts:
        names = queries.symbols(marts)
        rng = random.Random(1)
        for _ in range(lookups):
            began = time.perf_counter()
            queries.bars(marts, rng.choice(names), "1 minute")
            timings.append((time.perf_counter() - began) * 1000)
    return {
        "ticker_query_p50_ms": round(statistics.median(timings), 1),
        "ticker_query_p95_ms": round(statistics.quantiles(timings, n=20)[18], 1),
    }


def _run(name: str, rows: int, as_json: bool, *, needs_platform: bool = False) -> None:
    """The market benches whose module has run(spark, settings, rows=, log=)."""
    bench = importlib.import_module(f"spark.jobs.market.bench.{name}")
    extra = {"measure_marts": ticker_queries} if name == "analytics" else {}
    result = _with_spark(
        name,
        lambda spark, settings: bench.run(spark, settings, rows=rows, log=_log, **extra),
        needs_platform=needs_platform,
    )
    emit(result, name, as_json)


@bench_app.command("sync")
def sync_command(
    rows: int = typer.Option(1_000_000, min=1000),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Postgres sync (rows/s) vs a raw COPY of the same rows. Needs `make up`."""
    _run("sync", rows, as_json, needs_platform=True)


@bench_app.command("compaction")
def compaction_command(
    rows: int = typer.Option(2_000_000, min=1440),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """A DuckDB aggregate over 1,440 one-minute files, before vs after OPTIMIZE. Needs S3."""
    _run("compaction", rows, as_json, needs_platform=True)


@bench_app.command("analytics")
def analytics_command(
    rows: int = typer.Option(10_000_000, min=1000),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """dbt build vs one plain DuckDB aggregation; the dashboard's per-ticker query p95."""
    _run("analytics", rows, as_json)


@bench_app.command("producer")
def producer_command(
    count: int = typer.Option(500_000, min=1000),
    symbols: int = typer.Option(500, min=1),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Market producer events/s into Kafka vs generating the same events. Needs Kafka."""
    emit(_producer(count, symbols), "producer", as_json)


def _producer(count: int, symbols: int) -> dict:
    from kafka.errors import KafkaError

    from producers import bench

    settings = load_settings()
    try:
        return bench.run(settings, count=count, symbols=symbols, log=_log)
    except KafkaError as error:
        _log(f"the producer bench needs Kafka at {settings.kafka_bootstrap} ({error}): make up")
        raise typer.Exit(2) from None


@bench_app.command("enrichment")
def enrichment_command(
    symbols: int = typer.Option(500, min=1),
    rows: int = typer.Option(1_000_000, min=1000),
    repeat: int = typer.Option(3, min=1, help="runs per variant; the median is reported"),
    buckets: int = typer.Option(16, min=1, help="symbol hash buckets of the stateful step"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Trade enrichment vs a stateless projection vs a stream-stream join (rows/s)."""
    _enrichment(rows, symbols, repeat, buckets, as_json)


@bench_app.command("activity")
def activity_command(
    rows: int = typer.Option(1_000_000, min=1000),
    batch_rows: int = typer.Option(250_000, min=100, help="rows per micro-batch (one file)"),
    users: str = typer.Option(
        "10000,1000000",
        help="user counts: every variant at the first, the sessions also at the others",
    ),
    repeat: int = typer.Option(
        3, "--repeats", "--repeat", min=1, help="runs per variant; the median is reported"
    ),
    buckets: int = typer.Option(16, min=1, help="user hash buckets of the session operator"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Activity sessions and windows vs the same operator passing rows through vs a
    stateless projection (rows/s); sessions at 1M vs 10k users. Defaults: about 5 min."""
    if 2 * batch_rows > rows:
        # The first micro-batch is not measured: a figure needs at least one more.
        raise typer.BadParameter("--batch-rows must be at most half of --rows")
    _activity(rows, batch_rows, _user_counts(users), repeat, buckets, as_json)


@bench_app.command("orders")
def orders_command(
    rows: int = typer.Option(500_000, min=1000),
    batch_rows: int = typer.Option(100_000, min=100, help="rows per micro-batch (one file)"),
    orders_per_s: float = typer.Option(
        20.0, min=0.01, help="orders opened per second of event time"
    ),
    repeat: int = typer.Option(
        3, "--repeats", "--repeat", min=1, help="runs per variant; the median is reported"
    ),
    buckets: int = typer.Option(16, min=1, help="order hash buckets of the matching operator"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Order matching vs the same operator passing rows through vs a stateless projection
    (rows/s), its output checked against the input. Defaults: about 7 min."""
    if 2 * batch_rows > rows:
        # The first micro-batch is not measured: a figure needs at least one more.
        raise typer.BadParameter("--batch-rows must be at most half of --rows")
    _orders(rows, batch_rows, orders_per_s, repeat, buckets, as_json)


def _csv(rows: int, repeat: int, files: int, as_json: bool) -> None:
    from spark.jobs.csv import bench as csv_bench

    result = _with_spark(
        "csv",
        lambda spark, settings: csv_bench.run(
            spark, settings, rows=rows, repeat=repeat, files=files, log=_log
        ),
        needs_platform=True,
    )
    emit(result, "csv", as_json)


@bench_app.command("csv")
def csv_command(
    rows: int = typer.Option(1_000_000, min=1000),
    repeat: int = typer.Option(
        3, "--repeats", "--repeat", min=1, help="runs per variant; the median is reported"
    ),
    files: int = typer.Option(20, min=1, help="files of the whole-stream run"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The CSV drops load (COPY, ON CONFLICT, ledger) vs Spark's JDBC append of the same
    cleaned rows (rows/s), then the whole stream from files. Needs `make up`."""
    _csv(rows, repeat, files, as_json)


@bench_app.command("idle")
def idle_command(
    seconds: float = typer.Option(300, min=10, help="how long to measure"),
    interval_s: float = typer.Option(5, min=1, help="seconds between samples"),
    warmup_s: float = typer.Option(60, min=0, help="wait this long before measuring"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """CPU cores and RSS of the running platform with its demo feeds (services, stream
    drivers, Airflow), mean over `seconds`. Needs `make up`."""
    from control import idle

    settings = load_settings()
    require_platform(settings, "idle")
    if warmup_s:
        _log(f"idle bench: {warmup_s:.0f} s of warm-up first")
        time.sleep(warmup_s)
    result = idle.measure(lambda: idle.platform_processes(settings), seconds, interval_s, _log)
    result["goal"] = {"cpu_cores": 0.5, "rss_gib": 6.0}
    emit(result, "idle", as_json)


@bench_app.command("freshness")
def freshness_command(
    seconds: float = typer.Option(120, min=10, help="how long to send marked trades"),
    rate: float = typer.Option(
        0, min=0, help="extra market events/s beside the demo feed (0: the demo feed alone)"
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Seconds from a trade's send to the dashboard's per-ticker chart (p50, p95), polling
    the dashboard's own query path. Needs `make up` with the market pipeline running."""
    from control import freshness

    settings = load_settings()
    _running_market(settings, "freshness")
    emit(freshness.measure(settings, seconds=seconds, rate=rate, log=_log), "freshness", as_json)


def require_platform(settings: Settings, bench: str) -> None:
    """Exit with one sentence unless every service of the platform answers."""
    from infra.health import check_services

    down = [service for service, ok in check_services(settings).items() if not ok]
    if down:
        _log(f"the {bench} bench needs the platform ({', '.join(down)} down): run `make up`.")
        raise typer.Exit(2)


def require_running(settings: Settings, bench: str, jobs: list[str]) -> None:
    """Exit with one sentence unless the platform and these stream jobs are running."""
    from lakehouse import drivers

    require_platform(settings, bench)
    with drivers.connect(settings) as conn:
        stopped = [job for job in jobs if drivers.lock_holder(conn, job) is None]
    for job in stopped:
        _log(f"{job} is not running: `lakehouse stream start {job}` (make up starts it).")
    if stopped:
        raise typer.Exit(2)


def _running_market(settings: Settings, bench: str) -> None:
    from lakehouse.registry import load_registry

    require_running(settings, bench, [load_registry(settings).pipeline("market").job])


@bench_app.command("latency")
def latency_command(
    rate: float = typer.Option(20_000, min=1, help="market events/s beside the demo feed"),
    seconds: float = typer.Option(60, min=10, help="how long to send"),
    processes: int = typer.Option(2, min=1, max=64, help="producer processes"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Seconds from a trade's send to its commit in bronze and silver and to the Postgres
    live bars (p50, p95, p99 over every trade), and whether bronze kept up with the rate.
    Needs `make up` with the market pipeline running."""
    from control import latency

    settings = load_settings()
    _running_market(settings, "latency")
    try:
        result = latency.measure(
            settings, rate=rate, seconds=seconds, processes=processes, log=_log
        )
    except latency.NotReady as error:
        _log(str(error))
        raise typer.Exit(2) from None
    emit(result, "latency", as_json)


@bench_app.command("all")
def all_command(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every benchmark with its default sizes."""
    emit(_producer(500_000, 500), "producer", as_json)
    for symbols in (500, 5000):
        _enrichment(1_000_000, symbols, 3, 16, as_json)
    _activity(1_000_000, 250_000, (10_000, 1_000_000), 3, 16, as_json)
    _orders(500_000, 100_000, 20.0, 3, 16, as_json)
    _run("analytics", 10_000_000, as_json)
    _run("sync", 1_000_000, as_json, needs_platform=True)
    _csv(1_000_000, 3, 20, as_json)
    _run("compaction", 2_000_000, as_json, needs_platform=True)
