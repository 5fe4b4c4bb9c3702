"""`lakehouse`: install, start, stop and inspect the embedded platform."""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import sys
from importlib import metadata
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from control import platform
from control.bench import bench_app
from lakehouse.install import InstallError, ferretdb_ready, find_go, install
from lakehouse.java import java_major_version, java_problem
from lakehouse.process import port_bindable
from lakehouse.settings import Settings, ensure_credentials, load_settings

app = typer.Typer(
    help="A streaming lakehouse on one machine: Kafka, S3, Postgres, MongoDB (FerretDB), "
    "Spark + Delta, Airflow and a dashboard as local processes.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
app.add_typer(bench_app, name="bench")


def _fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def _require_java() -> None:
    problem = java_problem()
    if problem:
        raise _fail(problem)


def _install(settings: Settings, *, ferretdb: bool = True) -> None:
    _require_java()
    try:
        with console.status("checking jars and FerretDB") as spinner:
            install(
                settings,
                log=lambda line: spinner.update(line) or console.print(f"  {line}"),
                ferretdb=ferretdb,
            )
    except InstallError as error:
        raise _fail(str(error)) from None


@app.command("install")
def install_command(
    ferretdb: bool = typer.Option(
        True,
        "--ferretdb/--no-ferretdb",
        help="also build the FerretDB server (needs Go; the compose image skips it: it runs "
        "mongod in its own container)",
    ),
) -> None:
    """Fetch the jars pip cannot install (Kafka broker, Spark's Kafka/Delta/S3A jars) and
    build the FerretDB server (MongoDB wire protocol) from its Go module, each once."""
    _install(load_settings(), ferretdb=ferretdb)
    console.print("[green]installed[/green]")


@app.command()
def up(
    demo: bool = typer.Option(True, "--demo/--no-demo", help="start the demo market feed"),
    spark_cluster: bool = typer.Option(
        False, "--spark-cluster", help="also start a Spark standalone master and worker"
    ),
) -> None:
    """Install what is missing, start every service, wait until healthy, print the URLs."""
    settings, generated = ensure_credentials(load_settings())
    if spark_cluster:
        settings = settings.model_copy(update={"spark_master": settings.spark_cluster_master})
    _install(settings)
    chosen = platform.services(settings, spark_cluster=spark_cluster, demo=demo)
    try:
        with console.status("starting the platform") as spinner:
            report = platform.up(
                chosen, log=lambda line: spinner.update(line) or console.print(f"  {line}")
            )
    except platform.PlatformError as error:
        raise _fail(str(error)) from None
    _print_status(platform.status(chosen))
    _print_input_folders(settings, create=True)
    if report.already_running:
        console.print(f"already running: {', '.join(report.already_running)}")
    console.print(f"ready in {report.seconds:.1f} s")
    if generated:
        console.print(
            f"Generated credentials (stored in {settings.credentials_path}, mode 0600; "
            "shown only this once):"
        )
        for name, value in generated.items():
            console.print(f"  {name} = {value}", highlight=False)
    console.print(
        f"Airflow: {settings.airflow_url} (user {settings.airflow_admin_user})   "
        f"Dashboard: {settings.dashboard_url}   S3: {settings.s3_endpoint} "
        f"(bucket {settings.s3_bucket})   Kafka: {settings.kafka_bootstrap}   "
        f"MongoDB: {settings.mongo_uri()}{settings.mongo_database}"
    )


@app.command()
def down() -> None:
    """Stop everything `up` started (SIGTERM, then SIGKILL after a timeout)."""
    settings = load_settings()
    stopped = platform.down(platform.all_services(settings), log=console.print)
    console.print("stopped " + (", ".join(stopped) if stopped else "nothing (nothing was running)"))


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Per service: pid, ports, healthy, URL, RSS memory and CPU (cores, over 1 s)."""
    settings = load_settings()
    rows = platform.status(platform.all_services(settings))
    if as_json:
        print(
            json.dumps(
                {
                    "services": rows,
                    "total_rss_mb": round(sum(row["rss_mb"] for row in rows), 1),
                    "total_cpu_cores": round(sum(row["cpu_cores"] for row in rows), 2),
                    "input_folders": _input_folders(settings),
                },
                indent=2,
            )
        )
        return
    _print_status(rows)
    _print_input_folders(settings)


def _input_folders(settings) -> dict[str, str]:
    from lakehouse.registry import RegistryError, load_registry

    try:
        return load_registry(settings).input_folders(settings)
    except RegistryError:
        return {}  # `lakehouse pipelines` says what is wrong with it


def _print_input_folders(settings, *, create: bool = False) -> None:
    """The folders pipelines watch for dropped files (a local one is created if missing)."""
    for pipeline, folder in _input_folders(settings).items():
        if create and "://" not in folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
        console.print(f"{pipeline} pipeline input folder: {folder}", highlight=False)


def _print_status(rows: list[dict]) -> None:
    table = Table("service", "pid", "healthy", "ports", "url", "RSS MB", "CPU cores")
    for row in rows:
        healthy = (
            "[green]yes[/green]"
            if row["healthy"]
            else ("[red]no[/red]" if row["running"] else "[dim]stopped[/dim]")
        )
        table.add_row(
            row["service"],
            str(row["pid"] or "-"),
            healthy,
            ",".join(map(str, row["ports"])) or "-",
            row["url"],
            f"{row['rss_mb']:.0f}",
            f"{row['cpu_cores']:.2f}",
        )
    console.print(table)
    console.print(
        f"total RSS: {sum(r['rss_mb'] for r in rows) / 1024:.2f} GiB, "
        f"CPU: {sum(r['cpu_cores'] for r in rows):.2f} cores (mean over the last second)"
    )


@app.command()
def logs(
    service: str = typer.Argument(..., help="service name, as in `lakehouse status`"),
    lines: int = typer.Option(50, "-n", "--lines"),
) -> None:
    """Print the last lines of a service's log."""
    settings = load_settings()
    by_name = {s.name: s for s in platform.all_services(settings)}
    if service not in by_name:
        raise _fail(f"no service named {service!r}; choose one of: {', '.join(by_name)}.", 2)
    sys.stdout.write(by_name[service].process.tail(lines))


@app.command()
def doctor() -> None:
    """Check Java, Maven, disk, ports and package versions."""
    settings = load_settings()
    problems = 0
    table = Table("check", "result")
    java_issue = java_problem()
    problems += java_issue is not None
    table.add_row("java", f"[red]{java_issue}[/red]" if java_issue else str(java_major_version()))
    mvn = shutil.which("mvn")
    problems += mvn is None
    table.add_row("maven", mvn or "[red]missing (apt-get install maven)[/red]")
    if ferretdb_ready(settings):
        table.add_row("ferretdb", str(settings.ferretdb_binary))
    else:
        go = find_go()
        problems += go is None
        table.add_row(
            "ferretdb",
            f"not built yet (make install builds it with {go})"
            if go
            else "[red]not built, and Go is missing to build it (install Go 1.24+)[/red]",
        )
    settings.home.mkdir(parents=True, exist_ok=True)
    free_gb = shutil.disk_usage(settings.home).free / 1e9
    problems += free_gb < 5
    table.add_row(
        "disk free", f"{free_gb:.0f} GB" + (" [red](need 5+)[/red]" if free_gb < 5 else "")
    )
    for package in (
        "pyspark",
        "delta-spark",
        "apache-airflow",
        "dbt-duckdb",
        "duckdb",
        "kafka-python",
        "streamlit",
    ):
        try:
            table.add_row(package, metadata.version(package))
        except metadata.PackageNotFoundError:
            problems += 1
            table.add_row(package, "[red]not installed (make install)[/red]")
    for service in platform.all_services(settings):
        running = service.process.pid is not None
        for setting, port in service.ports().items():
            if running or port_bindable(settings.bind_host, port):
                continue
            problems += 1
            table.add_row(
                f"port {port}", f"[red]in use, needed by {service.name} ({setting})[/red]"
            )
    console.print(table)
    if problems:
        raise _fail(f"{problems} problem(s) found.")
    console.print("[green]all checks passed[/green]")


@app.command(
    "dbt",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def dbt_command(ctx: typer.Context) -> None:
    """Run dbt on the lake with the platform's settings, e.g. `lakehouse dbt build`."""
    from lakehouse.analytics import run_dbt

    raise typer.Exit(run_dbt(load_settings(), ctx.args or ["build"]).returncode)


def _layout(settings: Settings, namespace: str):
    """The namespace's layout, or one sentence saying what is wrong with the namespace or
    the registry."""
    from lakehouse.layout import InvalidNamespace, Layout
    from lakehouse.registry import RegistryError

    try:
        return Layout(settings, namespace)
    except (InvalidNamespace, RegistryError) as error:
        raise _fail(f"{error}.", 2) from None


@app.command()
def migrate(
    namespace: str = typer.Option("", help="also an isolated run's serving schema"),
) -> None:
    """Bring the Postgres tables to their newest version (`up` does this too)."""
    import psycopg
    from sqlalchemy.exc import OperationalError

    from lakehouse.migrations import upgrade_layout, upgrade_platform

    settings = load_settings()
    layout = _layout(settings, namespace)
    try:
        applied = upgrade_platform(settings) + upgrade_layout(settings, layout)
    except (OperationalError, psycopg.OperationalError) as error:
        raise _fail(f"Postgres is not reachable ({error}): start the platform (make up).") from None
    console.print(f"applied: {', '.join(applied)}" if applied else "up to date")


@app.command()
def pipelines() -> None:
    """The registered pipelines: their job, topics, tables, serving tables and dbt models."""
    layout = _layout(load_settings(), "")
    table = Table("pipeline", "job", "topics", "tables (writer)", "serving", "dbt")
    for p in layout.registry.pipelines:
        table.add_row(
            p.name,
            p.job,
            "\n".join(t.name for t in p.topics) or "-",
            "\n".join(f"{t.name} ({t.writer})" for t in p.tables) or "-",
            "\n".join(s.target for s in p.serving) or "-",
            p.dbt_select or "-",
        )
    console.print(table)


@app.command()
def stream(
    action: str = typer.Argument(..., help="status, start, stop or restart"),
    job: str = typer.Argument("market_pipeline", help="a registered streaming job"),
    namespace: str = typer.Option("", help="an isolated run's namespace"),
) -> None:
    """Start, stop or inspect a supervised streaming job (what the stream_control DAG does)."""
    import psycopg

    from infra.airflow import AirflowService
    from lakehouse import drivers, supervision

    settings = load_settings()
    layout = _layout(settings, namespace)
    if job not in layout.registry.jobs:
        registered = ", ".join(sorted(layout.registry.jobs))
        raise _fail(f"unknown job {job!r}; registered: {registered}", 2)
    if action not in ("status", "start", "stop", "restart"):
        raise _fail(f"unknown action {action!r}: status, start, stop or restart", 2)
    stream_job = layout.registry.job(job)
    # The driver is submitted exactly as the Airflow task submits it (same connection, env).
    os.environ.update(AirflowService(settings).environment())
    try:
        if action == "status":
            with drivers.connect(settings) as conn:
                state = supervision.read_state(conn, stream_job, stream_job.key(namespace))
            console.print_json(json.dumps(state.__dict__, default=str))
            return
        console.print(supervision.control(settings, stream_job, namespace, action))
    except supervision.SupervisionError as error:
        raise _fail(str(error)) from None
    except psycopg.OperationalError as error:
        raise _fail(f"Postgres is not reachable ({error}): start the platform (make up).") from None


@app.command()
def chaos(
    kills: int = typer.Option(20, min=0, help="SIGKILLs of a streaming driver (random each)"),
    restart: list[str] = typer.Option(
        ["kafka", "s3", "postgres"], help="services restarted once each (repeatable)"
    ),
    no_restarts: bool = typer.Option(False, "--no-restarts", help="restart no service"),
    kill_sync: bool = typer.Option(True, help="kill the Postgres sync inside its transaction"),
    kill_optimize: bool = typer.Option(True, help="kill the driver during an OPTIMIZE"),
    rate: float = typer.Option(200.0, min=1.0, help="events/s each producer sends meanwhile"),
    seed: int = typer.Option(7, help="the producers' streams and the order of the faults"),
    pipeline: list[str] = typer.Option(
        [], help="run only this pipeline (repeatable) [default: every one with an audit]"
    ),
    supervisor: str = typer.Option(
        "cycle",
        help="who restarts the drivers: the supervisor's cycle every 5 s (cycle), or the "
        "stream_supervisor DAG every minute (airflow; with --own-platform)",
    ),
    own_platform: bool = typer.Option(
        False, "--own-platform", help="start a platform of its own for the run (make chaos)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the report as one JSON line"),
) -> None:
    """Inject faults while every pipeline's feed streams, then reconcile every sink with what
    was produced (report in bench-results/chaos.json; exit 1 when a sink lost or doubled
    rows)."""
    from control import chaos as chaos_run
    from control.bench import emit, require_platform
    from lakehouse.registry import RegistryError, load_registry

    if own_platform:
        arguments = [a for a in sys.argv[2:] if a != "--own-platform"]
        raise typer.Exit(chaos_run.on_side_platform(arguments))
    try:
        plan = chaos_run.Plan(
            kills=kills,
            restarts=() if no_restarts else tuple(restart),
            kill_sync=kill_sync,
            kill_during_optimize=kill_optimize,
            rate=rate,
            seed=seed,
            pipelines=tuple(pipeline),
            supervisor=supervisor,
        )
        settings = load_settings()
        chaos_run.audited(load_registry(settings), plan.pipelines)
    except (ValueError, RegistryError) as error:
        raise _fail(f"{error}.", 2) from None
    require_platform(settings, "chaos")
    log = functools.partial(print, file=sys.stderr, flush=True)
    try:
        report = chaos_run.run(settings, plan, log)
    except chaos_run.ChaosError as error:
        raise _fail(f"chaos run stopped: {error}") from None
    emit(report, "chaos", as_json)
    if not report["passed"]:
        raise _fail("a sink lost or doubled records, or a fault had no recovery: see above")


@app.command()
def soak(
    minutes: float = typer.Option(30.0, min=1.0, help="how long the load runs"),
    rate: float = typer.Option(5000.0, min=1.0, help="events/s, an equal share per pipeline"),
    warmup_minutes: float = typer.Option(5.0, min=0.0, help="left out of the verdicts"),
    interval_s: float = typer.Option(15.0, min=1.0, help="seconds between samples"),
    as_json: bool = typer.Option(False, "--json", help="print the report as one JSON line"),
) -> None:
    """A steady load on the running platform with Airflow's sync and maintenance: RSS, state
    stores and Kafka lag over time (bench-results/soak.json and soak.png; exit 1 when one
    grew). Needs `make up` with the stream drivers running."""
    from control import soak as soak_run
    from control.bench import RESULTS_DIR, emit, require_running
    from lakehouse.registry import load_registry

    settings = load_settings()
    require_running(settings, "soak", list(load_registry(settings).jobs))
    log = functools.partial(print, file=sys.stderr, flush=True)
    report = soak_run.measure(
        settings,
        minutes=minutes,
        rate=rate,
        warmup_minutes=warmup_minutes,
        interval_s=interval_s,
        log=log,
    )
    RESULTS_DIR.mkdir(exist_ok=True)
    report["plot"] = str(RESULTS_DIR / "soak.png")
    soak_run.plot(report["samples"], warmup_minutes * 60, Path(report["plot"]))
    emit(report, "soak", as_json, unprinted=("samples",))
    if not report["passed"]:
        raise _fail("memory, state or Kafka lag grew during the soak: see above")


@app.command()
def replay(
    from_time: str = typer.Option(..., "--from", help="first event time to rebuild (ISO-8601)"),
    table: str = typer.Option("trades_enriched", help="a replayable table (lakehouse pipelines)"),
    namespace: str = typer.Option("", help="an isolated run's namespace"),
) -> None:
    """Rebuild a replayable table from its inputs from a time on (what the replay DAG does);
    the owning stream is stopped meanwhile and started again if it was meant to run."""
    import psycopg

    from infra.airflow import AirflowService
    from lakehouse import replay as lake_replay
    from lakehouse import spark_submit, supervision

    settings = load_settings()
    try:
        lake_replay.check_request(_layout(settings, namespace).registry, table, from_time)
    except ValueError as error:
        raise _fail(f"{error}.", 2) from None
    os.environ.update(AirflowService(settings).environment())
    # spark-submit's output (the replay's progress and any refusal) goes to this log.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        report = lake_replay.replay(settings, table, from_time, namespace)
    except (supervision.SupervisionError, spark_submit.SparkApplicationFailed) as error:
        raise _fail(str(error)) from None
    except psycopg.OperationalError as error:
        raise _fail(f"Postgres is not reachable ({error}): start the platform (make up).") from None
    console.print_json(json.dumps(report))
    console.print(
        "The postgres_sync DAG brings the serving tables along on its next run; "
        "`lakehouse dbt build --full-refresh` rebuilds the marts from the replayed rows."
    )


# ---- user tools: read Kafka topics, open psql, look into MongoDB -----------------------

kafka_app = typer.Typer(
    help="Look into Kafka: read a topic's messages, list the topics. Kafka's own console "
    "consumer (kafka-console-consumer) also runs from the installed broker jars: "
    "`lakehouse kafka console-command TOPIC` prints the exact java command.",
    no_args_is_help=True,
)
app.add_typer(kafka_app, name="kafka")


def _user_error(message: str, code: int = 2) -> typer.Exit:
    """One sentence on stderr (these tools' stdout is data), no traceback."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _tool_layout(settings: Settings, namespace: str):
    """The namespace's layout, or one sentence on stderr and exit 2."""
    from lakehouse.layout import InvalidNamespace, Layout
    from lakehouse.registry import RegistryError

    try:
        return Layout(settings, namespace)
    except (InvalidNamespace, RegistryError) as error:
        raise _user_error(f"{error}.") from None


_TOPIC_HELP = "a topic as declared (see `lakehouse kafka topics`); --namespace adds its suffix"
_NAMESPACE_HELP = "an isolated run's namespace: reads TOPIC-NAMESPACE"


@kafka_app.command("consume")
def kafka_consume(
    topic: str = typer.Argument(..., help=_TOPIC_HELP),
    from_beginning: bool = typer.Option(
        False, "--from-beginning", help="start at the earliest offsets (default: new messages)"
    ),
    max_messages: int = typer.Option(
        None, "--max-messages", "-n", min=1, help="stop after N messages"
    ),
    namespace: str = typer.Option("", help=_NAMESPACE_HELP),
    timeout_s: float = typer.Option(
        10.0, "--timeout-s", min=0, help="stop after S seconds without a message (0: never)"
    ),
    read_uncommitted: bool = typer.Option(
        False,
        "--read-uncommitted",
        help="also show messages of aborted and still open transactions",
    ),
    keys: bool = typer.Option(False, "--keys", help="print each message's key and a tab first"),
) -> None:
    """Print a topic's messages, one value per line (read_committed, no consumer group).

    Stops after --max-messages, after --timeout-s without a new message, or on Ctrl-C.

    Kafka's own console consumer works too: `lakehouse kafka console-command TOPIC`.
    """
    from control import consume as kafka_tools

    settings = load_settings()
    name = _tool_layout(settings, namespace).topic(topic)
    try:
        report = kafka_tools.consume(
            settings,
            name,
            sys.stdout.buffer,
            from_beginning=from_beginning,
            max_messages=max_messages,
            timeout_s=timeout_s,
            read_committed=not read_uncommitted,
            keys=keys,
            on_ready=lambda line: typer.echo(line, err=True),
        )
    except kafka_tools.KafkaToolError as error:
        raise _user_error(str(error)) from None
    if report.reason == "output closed":
        # the reader went away (`| head`): nothing more may reach the closed pipe at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    typer.echo(kafka_tools.summary(report), err=True)


@kafka_app.command("topics")
def kafka_topics() -> None:
    """List the topics and their partition counts."""
    from control import consume as kafka_tools

    try:
        topics = kafka_tools.list_topics(load_settings())
    except kafka_tools.KafkaToolError as error:
        raise _user_error(str(error)) from None
    width = max((len(name) for name in topics), default=5)
    print(f"{'topic':<{width}}  partitions")
    for name in sorted(topics):
        print(f"{name:<{width}}  {topics[name]}")


@kafka_app.command("console-command")
def kafka_console_command(
    topic: str = typer.Argument(..., help=_TOPIC_HELP),
    from_beginning: bool = typer.Option(False, "--from-beginning"),
    max_messages: int = typer.Option(None, "--max-messages", "-n", min=1),
    namespace: str = typer.Option("", help=_NAMESPACE_HELP),
    read_uncommitted: bool = typer.Option(False, "--read-uncommitted"),
    keys: bool = typer.Option(False, "--keys"),
) -> None:
    """Print the java command running Kafka's own console consumer from the broker jars."""
    from control import consume as kafka_tools

    settings = load_settings()
    name = _tool_layout(settings, namespace).topic(topic)
    problem = kafka_tools.console_consumer_problem(settings)
    if problem:
        raise _user_error(problem)
    command = kafka_tools.console_consumer_command(
        settings,
        name,
        from_beginning=from_beginning,
        read_committed=not read_uncommitted,
        keys=keys,
        max_messages=max_messages,
    )
    print(kafka_tools.shell_command(command))


mongo_app = typer.Typer(
    help="Look into the platform's MongoDB database (FerretDB): without a command, open "
    "mongosh on it (when mongosh is on PATH); find, count and collections need only pymongo.",
)
app.add_typer(mongo_app, name="mongo")


def _mongo_shell(extra_args: list[str]) -> None:
    from control import mongo as mongo_tools

    settings = load_settings()
    program = mongo_tools.find_mongosh()
    if program is None:
        raise _user_error(mongo_tools.missing_mongosh_message(settings))
    try:
        mongo_tools.check_reachable(settings)
    except mongo_tools.MongoToolError as error:
        raise _user_error(str(error)) from None
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(program, mongo_tools.mongosh_argv(program, settings, extra_args))
    except OSError as error:
        raise _user_error(f"Could not run {program} ({error.strerror}).") from None


@mongo_app.callback(invoke_without_command=True)
def mongo_main(ctx: typer.Context) -> None:
    """Without a command: mongosh on the platform's database (LAKEHOUSE_MONGO_DATABASE)."""
    if ctx.invoked_subcommand is None:
        _mongo_shell([])


@mongo_app.command(
    "shell",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def mongo_shell(ctx: typer.Context) -> None:
    """mongosh on the platform's database; arguments after `--` go to mongosh, e.g.
    `lakehouse mongo shell -- --eval "db.stats()"`."""
    _mongo_shell(list(ctx.args))


_FILTER_HELP = 'a query filter as (Extended) JSON, e.g. \'{"status": "paid"}\''


@mongo_app.command("find")
def mongo_find(
    collection: str = typer.Argument(..., help="a collection of the platform's database"),
    filter_json: str = typer.Option("{}", "--filter", help=_FILTER_HELP),
    limit: int = typer.Option(20, "--limit", "-n", min=0, help="at most N documents (0: all)"),
) -> None:
    """Print a collection's documents as JSON lines (relaxed Extended JSON), in _id order."""
    from control import mongo as mongo_tools

    settings = load_settings()
    try:
        query = mongo_tools.parse_filter(filter_json)
        mongo_tools.find(settings, collection, query, limit, sys.stdout)
        sys.stdout.flush()
    except mongo_tools.MongoToolError as error:
        raise _user_error(str(error)) from None
    except BrokenPipeError:
        # the reader went away (`| head`): nothing more may reach the closed pipe at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


@mongo_app.command("count")
def mongo_count(
    collection: str = typer.Argument(..., help="a collection of the platform's database"),
    filter_json: str = typer.Option("{}", "--filter", help=_FILTER_HELP),
) -> None:
    """Print how many documents of a collection match (all without --filter)."""
    from control import mongo as mongo_tools

    try:
        query = mongo_tools.parse_filter(filter_json)
        print(mongo_tools.count(load_settings(), collection, query))
    except mongo_tools.MongoToolError as error:
        raise _user_error(str(error)) from None


@mongo_app.command("collections")
def mongo_collections() -> None:
    """List the collections of the platform's database, one per line."""
    from control import mongo as mongo_tools

    try:
        names = mongo_tools.collections(load_settings())
    except mongo_tools.MongoToolError as error:
        raise _user_error(str(error)) from None
    for name in names:
        print(name)


@app.command(
    "psql",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def psql_shell(
    ctx: typer.Context,
    namespace: str = typer.Option("", help="an isolated run's namespace: its serving schema"),
) -> None:
    """Open psql on the platform's database, search_path = the serving schema, then public.

    Arguments after `--` go to psql, e.g. `lakehouse psql -- -c "SELECT 1"`.
    """
    from control import psql as psql_tools

    settings = load_settings()
    schema = _tool_layout(settings, namespace).serving_schema
    try:
        program, argv, env = psql_tools.psql_invocation(
            settings, schema, ctx.args, find=psql_tools.find_psql
        )
        psql_tools.check_reachable(settings)
    except psql_tools.PsqlError as error:
        raise _user_error(str(error)) from None
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(program, argv, env)  # psql owns the terminal from here on
    except OSError as error:
        raise _user_error(f"Could not run {program} ({error.strerror}).") from None


if __name__ == "__main__":
    app()
