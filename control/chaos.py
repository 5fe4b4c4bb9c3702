"""A chaos run of every audited pipeline (`lakehouse chaos`, `make chaos`).

While each pipeline's producer sends live records with duplicates, late and malformed ones
(its audit says how: lakehouse/audit.py), the run injects faults one after another, each
after a random pause:
- SIGKILL of a streaming driver's whole process group, a random one each time
  (`Plan.kills` times);
- a restart of the Kafka broker, the S3 server and Postgres (once each);
- a SIGKILL of the Postgres sync inside its transaction;
- a SIGKILL of a driver while it runs an OPTIMIZE.
Nothing is repaired by hand: the supervisor's own cycle (`supervision.supervise`, what the
stream_supervisor DAG runs once a minute) runs every few seconds and starts drivers again.
After each fault the run waits until the drivers it touched hold their job's lock and have
committed a new batch: the fault's recovery time.

Then the producers stop, each audit pushes event time past what it sent, the streams drain,
the sync runs once more, and every sink of every pipeline is reconciled with what its
producer sent.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import psycopg

from control.consume import TopicReader
from lakehouse.audit import ChaosAudit
from lakehouse.kit import Pipeline, StreamJob, resolve
from lakehouse.layout import Layout
from lakehouse.registry import Registry
from lakehouse.settings import PROJECT_ROOT, Settings
from lakehouse.supervision import Action
from spark.checkpoints import batch_in_flight

SYNC_APPLICATION = "lakehouse-chaos-sync"  # the killed sync's Postgres application_name
RESTARTABLE = ("kafka", "s3", "postgres")
# Who starts the drivers again: the supervisor's cycle run by the chaos run itself every few
# seconds, or Airflow's stream_supervisor DAG (every minute, as on `make up`).
SUPERVISORS = ("cycle", "airflow")
SUPERVISOR_DAG = "stream_supervisor"
CHAOS_HOME = PROJECT_ROOT / ".lakehouse-chaos"
TOPIC_PARTITIONS = 3  # of each topic of the run's namespace
CHAOS_PORT_SHIFT = 300  # the test platform: 100, a second checkout's tests: 200
DRAIN_TIMEOUT_S = 900.0

Log = Callable[[str], None]


# ---- the plan and the verdict (pure) -------------------------------------------------


@dataclass(frozen=True)
class Plan:
    kills: int = 20
    restarts: tuple[str, ...] = RESTARTABLE
    kill_sync: bool = True
    kill_during_optimize: bool = True
    rate: float = 200.0  # events/s from each pipeline's producer for the whole run
    seed: int = 7
    gap_s: tuple[float, float] = (2.0, 20.0)  # pause before each fault, drawn uniformly
    recovery_timeout_s: float = 420.0
    supervisor_cycle_s: float = 5.0
    pipelines: tuple[str, ...] = ()  # the audited pipelines to run (empty: every one)
    supervisor: str = "cycle"  # one of SUPERVISORS

    def __post_init__(self) -> None:
        if self.supervisor not in SUPERVISORS:
            raise ValueError(
                f"no supervisor {self.supervisor!r}: choose {' or '.join(SUPERVISORS)}"
            )
        unknown = sorted(set(self.restarts) - set(RESTARTABLE))
        if unknown:
            raise ValueError(
                f"cannot restart {', '.join(unknown)}: choose among {', '.join(RESTARTABLE)}"
            )


def schedule(plan: Plan, rng: random.Random) -> list[str]:
    """The faults of the run in a random order."""
    faults = ["kill-driver"] * plan.kills + [f"restart-{name}" for name in plan.restarts]
    faults += ["kill-sync"] if plan.kill_sync else []
    faults += ["kill-during-optimize"] if plan.kill_during_optimize else []
    rng.shuffle(faults)
    return faults


def audited(registry: Registry, names: tuple[str, ...] = ()) -> list[Pipeline]:
    """The pipelines that declare an audit, or the named ones (each must declare one)."""
    if not names:
        return [p for p in registry.pipelines if p.audit]
    chosen = [registry.pipeline(name) for name in names]
    without = [p.name for p in chosen if not p.audit]
    if without:
        raise ValueError(f"no chaos audit declared for {', '.join(without)}")
    return chosen


def load_audit(pipeline: Pipeline) -> ChaosAudit:
    return resolve(pipeline.audit or "", "AUDIT")


def passed(report: dict) -> bool:
    return (
        all(s["lost"] == 0 and s["duplicated"] == 0 for s in report["sinks"].values())
        and not any(p.get("problems") for p in report["pipelines"].values())
        and all(f.get("recovered_s") is not None for f in report["faults"])
    )


# ---- the run (I/O) -------------------------------------------------------------------


class ChaosError(RuntimeError):
    """The run could not go on; the message says why."""


@dataclass
class Driver:
    alive: bool
    batches: int  # committed by the job's queries so far (their heartbeats)
    pgid: int | None


class LakeReader:
    """The readers an audit reads its sinks with (lakehouse.audit.Lake), on one namespace."""

    def __init__(self, settings: Settings, layout: Layout) -> None:
        self.settings = settings
        self.layout = layout
        self._topics: dict[str, TopicReader] = {}

    def delta(self, table: str, columns: list[str]) -> pd.DataFrame:
        from lakehouse.serving_sync import open_table, plain_strings

        found = open_table(self.settings, self.layout.table(table))
        if found is None:
            return pd.DataFrame(columns=columns)
        return plain_strings(found.to_pyarrow_table(columns=columns)).to_pandas()

    def postgres(self, table: str, columns: list[str]) -> pd.DataFrame:
        with psycopg.connect(self.settings.postgres_dsn()) as conn:
            rows = conn.execute(
                f"SELECT {', '.join(columns)} FROM {self.layout.serving_schema}.{table}"
            ).fetchall()
        return pd.DataFrame(rows, columns=columns)

    def kafka_values(self, topic: str) -> list[bytes]:
        # Kept open: the drain polls every few seconds, and each poll reads only what is new.
        if topic not in self._topics:
            self._topics[topic] = TopicReader(self.settings, self.layout.topic(topic))
        return list(self._topics[topic].read())

    def close(self) -> None:
        for reader in self._topics.values():
            reader.close()
        self._topics.clear()

    def mongo(self, collection: str) -> list[dict]:
        from lakehouse.mongo import mongo_client

        with mongo_client(self.settings) as client:
            database = client[self.settings.mongo_database]
            return list(database[self.layout.collection(collection)].find())


class ChaosRun:
    def __init__(self, settings: Settings, plan: Plan, log: Log = print) -> None:
        self.settings = settings
        self.plan = plan
        self.log = log
        self.rng = random.Random(plan.seed)
        if plan.supervisor == "airflow":
            # The DAG supervises the platform's own namespace, so the run takes it: only on
            # a fresh platform of its own, where nothing else lives there.
            if settings.home.resolve() != CHAOS_HOME.resolve():
                raise ChaosError(
                    "the Airflow supervisor runs on the platform's own namespace: "
                    "use --own-platform (make chaos)"
                )
            self.layout = Layout(settings)
        else:
            self.layout = Layout(settings, f"chaos{uuid.uuid4().hex[:8]}")
        registry = self.layout.registry
        self.pipelines = audited(registry, plan.pipelines)
        if not self.pipelines:
            raise ChaosError("no registered pipeline declares a chaos audit")
        self.audits = {p.name: load_audit(p) for p in self.pipelines}
        self.jobs = list({p.job: registry.job(p.job) for p in self.pipelines}.values())
        if plan.kill_sync and not any(p.serving for p in self.pipelines):
            raise ChaosError("no pipeline of the run has serving tables to sync: --no-kill-sync")
        if plan.kill_during_optimize and not self.optimized_table():
            raise ChaosError("no pipeline of the run has a partitioned Delta table to OPTIMIZE")
        self.lake = LakeReader(settings, self.layout)
        self.began = time.monotonic()
        self.faults: list[dict] = []
        self._stop_supervisor = threading.Event()

    def optimized_table(self) -> str | None:
        """The table compacted when a driver is killed during an OPTIMIZE: the first
        partitioned one (the market's bronze trades)."""
        tables = [t.name for p in self.pipelines for t in p.tables if t.partitions]
        return tables[0] if tables else None

    def key(self, job: StreamJob) -> str:
        return job.key(self.layout.namespace)

    # -- the platform's state

    def driver(self, job: StreamJob) -> Driver | None:
        """None while Postgres does not answer."""
        from lakehouse.drivers import connect, lock_holder
        from lakehouse.supervision import committed_batches

        key = self.key(job)
        try:
            with connect(self.settings) as conn:
                row = conn.execute(
                    "SELECT pgid FROM stream_drivers WHERE job_key = %s", (key,)
                ).fetchone()
                return Driver(
                    alive=lock_holder(conn, key) is not None,
                    batches=committed_batches(conn, key),
                    pgid=row[0] if row else None,
                )
        except psycopg.OperationalError:
            return None

    def batches(self) -> dict[str, int]:
        """Batches committed so far per job (0 while Postgres does not answer)."""
        states = {job.name: self.driver(job) for job in self.jobs}
        return {name: state.batches if state else 0 for name, state in states.items()}

    def wait_recovered(self, batches_before: dict[str, int], since: float) -> float | None:
        """Seconds from `since` until a driver of each job in `batches_before` holds its lock
        and has committed a batch past the count given; None when that does not happen within
        the plan's timeout."""
        deadline = since + self.plan.recovery_timeout_s
        waiting = {job.name: job for job in self.jobs if job.name in batches_before}
        while time.monotonic() < deadline:
            for name, job in list(waiting.items()):
                state = self.driver(job)
                if state and state.alive and state.batches > batches_before[name]:
                    del waiting[name]
            if not waiting:
                return round(time.monotonic() - since, 1)
            time.sleep(0.5)
        return None

    def kafka_lag(self, pipelines: list[Pipeline]) -> int | None:
        """Messages of their topics that their Kafka queries' last committed batches did not
        reach; None while a pipeline with topics has no committed Kafka batch yet."""
        from spark.kafka_offsets import committed_kafka_offsets, kafka_lag

        lag = 0
        for pipeline in pipelines:
            checkpoints = (Path(self.layout.checkpoint(q)) for q in pipeline.all_queries)
            committed = committed_kafka_offsets(checkpoints)
            if pipeline.topics and not committed:
                return None
            lag += sum(kafka_lag(self.settings, committed).values())
        return lag

    def wait_caught_up(self, pipelines: list[Pipeline], why: str) -> float:
        """Until their Kafka queries have committed everything their topics hold now."""
        since = time.monotonic()
        deadline = since + self.plan.recovery_timeout_s
        while time.monotonic() < deadline:
            lag = self.kafka_lag(pipelines)
            if lag == 0:
                return round(time.monotonic() - since, 1)
            time.sleep(1)
        names = ", ".join(p.name for p in pipelines)
        raise ChaosError(f"{names} did not read their topics to the end {why}")

    def _now(self) -> float:
        return round(time.monotonic() - self.began, 1)

    # -- what keeps running

    def create_topics(self) -> None:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
        try:
            # The platform's own namespace (--supervisor airflow) has its topics from `up`.
            existing = set(admin.list_topics())
            missing = {
                self.layout.topic(t.name): {"num_partitions": TOPIC_PARTITIONS}
                for p in self.pipelines
                for t in p.topics
                if self.layout.topic(t.name) not in existing
            }
            if missing:
                admin.create_topics(missing)
        finally:
            admin.close()

    def _supervise(self) -> None:
        from lakehouse.supervision import supervise

        while not self._stop_supervisor.wait(self.plan.supervisor_cycle_s):
            for job in self.jobs:
                try:
                    decision = supervise(self.settings, job, self.layout.namespace)
                except Exception as error:  # a service is down: the next cycle tries again
                    self.log(f"supervisor: {job.name}: {str(error).splitlines()[0][:200]}")
                    continue
                if decision.action is not Action.HEALTHY:
                    self.log(f"supervisor: {job.name}: {decision.action} ({decision.reason})")

    def start_supervision(self) -> None:
        if self.plan.supervisor == "airflow":
            self._airflow("dags", "unpause", SUPERVISOR_DAG)
            self.log(f"chaos: {SUPERVISOR_DAG} DAG unpaused: it starts and restarts the drivers")
        else:
            threading.Thread(target=self._supervise, name="supervisor", daemon=True).start()

    def stop_supervision(self) -> None:
        if self.plan.supervisor == "airflow":
            try:
                self._airflow("dags", "pause", SUPERVISOR_DAG)
            except ChaosError as error:
                self.log(f"chaos: {error}")
        else:
            self._stop_supervisor.set()

    def _airflow(self, *arguments: str) -> None:
        from infra.airflow import airflow_cli
        from infra.base import ServiceError

        try:
            airflow_cli(self.settings, *arguments)
        except ServiceError as error:
            raise ChaosError(str(error)) from error

    def start_producers(self) -> dict[str, subprocess.Popen]:
        return {
            name: subprocess.Popen(
                audit.producer_command(self.settings, self.layout, self.plan.rate, self.plan.seed),
                cwd=PROJECT_ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            for name, audit in self.audits.items()
        }

    # -- the faults

    def kill_driver(self) -> dict:
        job = self.rng.choice(self.jobs)
        state = self.driver(job)
        if not state or not state.alive or not state.pgid:
            raise ChaosError(f"{job.name}'s driver is not running when it should be killed")
        at = time.monotonic()
        os.killpg(state.pgid, signal.SIGKILL)
        return {
            "job": job.name,
            "mid_batch": batch_in_flight(Path(self.layout.checkpoint(job.queries[0]))),
            "recovered_s": self.wait_recovered({job.name: state.batches}, at),
        }

    def restart_service(self, name: str) -> dict:
        from control import platform

        service = next(s for s in platform.services(self.settings, demo=False) if s.name == name)
        before = self.batches()
        at = time.monotonic()
        service.process.stop(self.settings.service_stop_timeout_s)
        down_at = time.monotonic()
        time.sleep(2)  # down long enough for clients to notice
        platform.up([service], log=lambda _: None)
        return {
            "stopped_in_s": round(down_at - at, 1),
            "down_s": round(time.monotonic() - down_at, 1),
            "recovered_s": self.wait_recovered(before, at),
        }

    def _sync(self, env: dict[str, str] | None = None) -> subprocess.Popen:
        chosen = [p.name for p in self.pipelines if p.serving]
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "lakehouse.serving_sync"),
                *("--namespace", self.layout.namespace),
                *(arg for name in chosen for arg in ("--pipeline", name)),
            ],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def sync(self) -> None:
        process = self._sync()
        _, errors = process.communicate(timeout=600)
        if process.returncode != 0:
            raise ChaosError(f"the sync failed (exit {process.returncode}): {errors[-800:]}")

    def kill_sync(self, attempts: int = 4) -> dict:
        """Kill the sync once it is inside its loading transaction (its Postgres session has
        an open transaction past the read of its progress); then a sync must complete."""
        env = {**os.environ, "PGAPPNAME": SYNC_APPLICATION}
        seen = None
        for attempt in range(1, attempts + 1):
            process = self._sync(env)
            with psycopg.connect(self.settings.postgres_dsn(), autocommit=True) as conn:
                while process.poll() is None and seen is None:
                    row = conn.execute(
                        """SELECT left(query, 120) FROM pg_stat_activity
                           WHERE application_name = %s AND xact_start IS NOT NULL
                             AND (query ILIKE '%%FOR UPDATE%%' OR query ILIKE 'COPY%%')""",
                        (SYNC_APPLICATION,),
                    ).fetchone()
                    if row:
                        process.kill()
                        seen = row[0]
                    else:
                        time.sleep(0.005)
            process.communicate(timeout=60)
            if seen:
                break
            self.log(f"chaos: the sync finished before it was caught (try {attempt})")
            time.sleep(15)  # more silver versions to load for the next try
        at = time.monotonic()
        self.sync()
        return {
            "landed_in_transaction": seen is not None,
            "statement": seen,
            "attempts": attempt,
            "recovered_s": round(time.monotonic() - at, 1),
        }

    def kill_during_optimize(self, attempts: int = 4) -> dict:
        from lakehouse import maintenance

        table = self.optimized_table()
        _, job = self.layout.registry.owner(table)
        landed = False
        for attempt in range(1, attempts + 1):
            # Negative: today's partition counts as closed, so there is something to compact.
            request = maintenance.submit(
                self.settings, self.key(job), table, "optimize", closed_after_hours=-24
            )
            status = self._wait_request(request, ("running", "done", "failed"))
            if status == "running":
                state = self.driver(job)
                if state and state.alive and state.pgid:
                    before, at = {job.name: state.batches}, time.monotonic()
                    os.killpg(state.pgid, signal.SIGKILL)
                    landed = True
                    break
            self.log(f"chaos: the OPTIMIZE was {status} before it was caught (try {attempt})")
            time.sleep(10)
        if not landed:
            return {
                "job": job.name,
                "landed_during_optimize": False,
                "attempts": attempt,
                "recovered_s": None,
            }
        recovered = self.wait_recovered(before, at)
        # The new driver takes the interrupted request up again.
        result = maintenance.wait(self.settings, [request], self.plan.recovery_timeout_s)
        return {
            "job": job.name,
            "landed_during_optimize": True,
            "attempts": attempt,
            "recovered_s": recovered,
            "optimize_after_restart": result[0],
        }

    def _wait_request(self, request: int, statuses: tuple[str, ...]) -> str:
        deadline = time.monotonic() + self.plan.recovery_timeout_s
        with psycopg.connect(self.settings.postgres_dsn(), autocommit=True) as conn:
            while time.monotonic() < deadline:
                (status,) = conn.execute(
                    "SELECT status FROM maintenance_requests WHERE id = %s", (request,)
                ).fetchone()
                if status in statuses:
                    return status
                time.sleep(0.02)
        raise ChaosError(f"maintenance request {request} was not taken up")

    def inject(self, fault: str) -> dict:
        if fault == "kill-driver":
            return self.kill_driver()
        if fault.startswith("restart-"):
            return self.restart_service(fault.removeprefix("restart-"))
        if fault == "kill-sync":
            return self.kill_sync()
        if fault == "kill-during-optimize":
            return self.kill_during_optimize()
        raise ValueError(f"unknown fault {fault!r}")

    # -- the end

    # -- the end

    def drain(self, produced: dict[str, dict]) -> list[str]:
        """Until every audit says its last sinks hold all they will, then one more while for
        batches still in flight (what they add must show as duplicated, not go unseen)."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        waiting = dict(self.audits)
        while waiting and time.monotonic() < deadline:
            polled_at = time.monotonic()
            for name, audit in list(waiting.items()):
                if audit.settled(produced[name], audit.read_back(self.lake)):
                    del waiting[name]
            if waiting:
                took = time.monotonic() - polled_at
                self.log(f"chaos: draining, waiting for {', '.join(waiting)} ({took:.0f} s read)")
                # A read of every sink costs seconds of CPU: leave the streams most of it.
                time.sleep(max(5.0, 2 * took))
        if waiting:
            self.log(f"chaos: {', '.join(waiting)} did not settle in time; reconciling them")
        time.sleep(3 * max(p.trigger_interval(self.settings) for p in self.pipelines))
        return list(waiting)

    def reconcile(self, produced: dict[str, dict]) -> tuple[dict, dict]:
        """Every pipeline's sink lines (one dict), and what else each audit reported."""
        sinks: dict[str, dict] = {}
        pipelines: dict[str, dict] = {}
        for name, audit in self.audits.items():
            result = audit.reconcile(produced[name], audit.read_back(self.lake))
            sinks.update(result.pop("sinks"))
            pipelines[name] = result
        return sinks, pipelines

    def stop_drivers(self) -> None:
        from lakehouse.supervision import set_desired, stop

        for job in self.jobs:
            set_desired(self.settings, self.key(job), "stopped")
            stop(self.settings, self.key(job))

    def run(self) -> dict:
        from lakehouse.supervision import set_desired

        faults = schedule(self.plan, self.rng)
        self.log(
            f"chaos: namespace {self.layout.namespace}, pipelines "
            f"{', '.join(self.audits)}, {len(faults)} faults, {self.plan.rate:.0f} events/s each"
        )
        self.create_topics()
        primed = [
            p
            for p in self.pipelines
            if self.audits[p.name].open_event_time(self.settings, self.layout)
        ]
        for job in self.jobs:
            set_desired(self.settings, self.key(job), "running")
        self.start_supervision()
        try:
            if primed:
                waited = self.wait_caught_up(primed, "before the producers started")
                self.log(
                    f"chaos: {', '.join(p.name for p in primed)} read their primers ({waited} s)"
                )
            produced = self.inject_all(faults)
            # A sentinel read in a batch capped before the backlog's end would move the
            # watermark a day ahead of the rest of the backlog: the streams first catch up.
            self.wait_caught_up(self.pipelines, "after the producers stopped")
            for name, audit in self.audits.items():
                audit.close_event_time(self.settings, self.layout, produced[name])
            unsettled = self.drain(produced)
            self.sync()
            sinks, pipelines = self.reconcile(produced)
            for name, result in pipelines.items():
                # Not settled: what its sinks miss may still have been on its way.
                result["settled"] = name not in unsettled
        finally:
            self.stop_supervision()
            self.stop_drivers()
            self.lake.close()
        report = {
            "benchmark": "chaos",
            "namespace": self.layout.namespace,
            "plan": asdict(self.plan),
            "seconds": self._now(),
            "producers": produced,
            "faults": self.faults,
            "recovery_s": recovery_summary(self.faults),
            "sinks": sinks,
            "pipelines": pipelines,
        }
        report["passed"] = passed(report)
        return report

    def inject_all(self, faults: list[str]) -> dict[str, dict]:
        """The faults one after another while the producers send; returns their reports."""
        producers = self.start_producers()
        try:
            first = self.wait_recovered(dict.fromkeys((j.name for j in self.jobs), 0), self.began)
            if first is None:
                raise ChaosError("a driver did not commit a first batch")
            self.log(f"chaos: every driver committed a first batch after {first} s")
            for number, fault in enumerate(faults, start=1):
                time.sleep(self.rng.uniform(*self.plan.gap_s))
                outcome = {"fault": fault, "at_s": self._now(), **self.inject(fault)}
                self.faults.append(outcome)
                self.log(f"chaos: {number}/{len(faults)} {json.dumps(outcome)}")
                if outcome["recovered_s"] is None and outcome.get("landed_during_optimize", 1):
                    raise ChaosError(f"no recovery from {fault} within the timeout")
        finally:
            for process in producers.values():
                process.send_signal(signal.SIGTERM)
            outputs = {
                name: process.communicate(timeout=120)[0] for name, process in producers.items()
            }
        produced = {}
        for name, out in outputs.items():
            lines = out.strip().splitlines()
            try:
                produced[name] = json.loads(lines[-1])
            except (IndexError, ValueError):
                code = producers[name].returncode
                raise ChaosError(f"the {name} producer printed no report (exit {code})") from None
        return produced


def recovery_summary(faults: list[dict]) -> dict:
    """Per kind of fault: how many, and the slowest and median recovery."""
    by_kind: dict[str, list[float]] = {}
    for fault in faults:
        if fault.get("recovered_s") is not None:
            by_kind.setdefault(fault["fault"], []).append(fault["recovered_s"])
    return {
        kind: {"count": len(times), "median": float(pd.Series(times).median()), "max": max(times)}
        for kind, times in by_kind.items()
    }


@contextmanager
def submitting_environment(settings: Settings) -> Iterator[None]:
    """The environment the Airflow task submits drivers with (spark-submit on PATH, the
    Spark connection), for the supervisor cycles this process runs; restored afterwards."""
    from infra.airflow import AirflowService

    saved = dict(os.environ)
    os.environ.update(AirflowService(settings).environment())
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def quiet(*loggers: str) -> Iterator[None]:
    """Only warnings from these loggers for the block: the supervisor's cycle every few
    seconds and the submit hook's whole command line would bury the run's own lines."""
    levels = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def run(settings: Settings, plan: Plan, log: Log = print) -> dict:
    with (
        submitting_environment(settings),
        quiet("lakehouse.supervision", "airflow.task.hooks", "kafka"),
    ):
        return ChaosRun(settings, plan, log).run()


def on_side_platform(arguments: list[str], log: Log = print) -> int:
    """`lakehouse chaos` on a platform of its own (CHAOS_HOME, ports moved by
    CHAOS_PORT_SHIFT): restarting Kafka, S3 and Postgres never touches the `make up` one.
    Starts it afresh (a previous run's data removed), runs the chaos there, stops it;
    returns the chaos run's exit code."""
    import shutil

    from control.platform import side_platform_env

    env = side_platform_env(CHAOS_HOME, CHAOS_PORT_SHIFT)
    cli = str(Path(sys.executable).parent / "lakehouse")
    subprocess.run([cli, "down"], env=env, cwd=PROJECT_ROOT, check=False, capture_output=True)
    shutil.rmtree(CHAOS_HOME, ignore_errors=True)
    log(f"chaos: starting a platform of its own under {CHAOS_HOME}")
    started = subprocess.run([cli, "up", "--no-demo"], env=env, cwd=PROJECT_ROOT, check=False)
    if started.returncode != 0:
        return started.returncode
    try:
        return subprocess.run([cli, "chaos", *arguments], env=env, check=False).returncode
    finally:
        # Whether every service came back from the restarts (Airflow's scheduler included).
        subprocess.run([cli, "status"], env=env, cwd=PROJECT_ROOT, check=False)
        subprocess.run([cli, "down"], env=env, cwd=PROJECT_ROOT, check=False)
