"""A chaos run of the market pipeline (`lakehouse chaos`, `make chaos`).

While the market producer sends live trades with duplicates, late and malformed records,
the run injects faults one after another, each after a random pause:
- SIGKILL of the streaming driver's whole process group (`Plan.kills` times);
- a restart of the Kafka broker, the S3 server and Postgres (once each);
- a SIGKILL of the Postgres sync inside its transaction;
- a SIGKILL of the driver while it runs an OPTIMIZE.
Nothing is repaired by hand: the supervisor's own cycle (`supervision.supervise`, what the
stream_supervisor DAG runs once a minute) runs every few seconds and starts the driver
again. After each fault the run waits until a driver holds the job's lock and has committed
a new batch: the fault's recovery time.

Then the producer stops, a sentinel reference moves the watermark past every trade, the
stream drains, the sync runs once more, and every sink is reconciled with what the
producer sent. The producer's stream is deterministic per seed, so its report's message
count is enough to regenerate which trade ids it sent on time, late and twice. Each sink's
expected content is a multiset of keys; `lost` is what is expected and missing, and
`duplicated` what is found beyond the expected (a second copy, or a row nobody sent).
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
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path

import pandas as pd
import psycopg

from lakehouse.layout import Layout
from lakehouse.settings import PROJECT_ROOT, Settings
from lakehouse.supervision import Action
from spark.checkpoints import batch_in_flight

JOB = "market_pipeline"
SENTINEL = "ZZZZZ"  # a reference far ahead in event time: the watermark passes every trade
SYNC_APPLICATION = "lakehouse-chaos-sync"  # the killed sync's Postgres application_name
RESTARTABLE = ("kafka", "s3", "postgres")
CHAOS_HOME = PROJECT_ROOT / ".lakehouse-chaos"
TOPIC_PARTITIONS = 3  # of each topic of the run's namespace
CHAOS_PORT_SHIFT = 300  # the test platform: 100, a second checkout's tests: 200

Log = Callable[[str], None]


# ---- the plan and the reconciliation (pure) ------------------------------------------


@dataclass(frozen=True)
class Plan:
    kills: int = 20
    restarts: tuple[str, ...] = RESTARTABLE
    kill_sync: bool = True
    kill_during_optimize: bool = True
    rate: float = 200.0  # events/s from the producer for the whole run
    seed: int = 7
    symbols: int = 20
    gap_s: tuple[float, float] = (2.0, 20.0)  # pause before each fault, drawn uniformly
    recovery_timeout_s: float = 420.0
    supervisor_cycle_s: float = 5.0
    duplicate_fraction: float = 0.02
    late_fraction: float = 0.02
    malformed_fraction: float = 0.02

    def __post_init__(self) -> None:
        unknown = sorted(set(self.restarts) - set(RESTARTABLE))
        if unknown:
            raise ValueError(
                f"cannot restart {', '.join(unknown)}: choose among {', '.join(RESTARTABLE)}"
            )

    def simulator(self) -> dict:
        """The MarketSimulator options of the run's producer."""
        return {
            "symbols": self.symbols,
            "seed": self.seed,
            "reference_every": 50,
            "late_fraction": self.late_fraction,
            "duplicate_fraction": self.duplicate_fraction,
            "malformed_fraction": self.malformed_fraction,
        }


def schedule(plan: Plan, rng: random.Random) -> list[str]:
    """The faults of the run in a random order."""
    faults = ["kill-driver"] * plan.kills + [f"restart-{name}" for name in plan.restarts]
    faults += ["kill-sync"] if plan.kill_sync else []
    faults += ["kill-during-optimize"] if plan.kill_during_optimize else []
    rng.shuffle(faults)
    return faults


@dataclass(frozen=True)
class Sent:
    """What the producer sent, by kind; keys are what the sinks keep of each message."""

    on_time: Counter = field(default_factory=Counter)  # trade id -> copies (first + repeats)
    late: Counter = field(default_factory=Counter)  # late trade id -> copies
    repeats: Counter = field(default_factory=Counter)  # on-time trade id -> repeated copies
    references: Counter = field(default_factory=Counter)  # symbol -> updates
    malformed: Counter = field(default_factory=Counter)  # reason -> messages

    @property
    def trade_messages(self) -> int:
        return total(self.on_time) + total(self.late) + total(self.malformed)


def regenerate(simulator: dict, messages: int) -> Sent:
    """The first `messages` messages of the producer's stream for these options (the ids and
    kinds do not depend on the clock, only on the seed)."""
    from producers.market import MarketSimulator

    sent = Sent()
    for message in islice(MarketSimulator(**simulator).messages(0, None, 1), messages):
        if message.kind == "references":
            sent.references[message.key.decode()] += 1
        elif message.kind == "malformed":
            sent.malformed[message.reason] += 1
        else:
            trade_id = json.loads(message.value)["trade_id"]
            if message.kind == "late" or trade_id in sent.late:
                sent.late[trade_id] += 1
            else:
                sent.on_time[trade_id] += 1
                if message.kind == "duplicates":
                    sent.repeats[trade_id] += 1
    return sent


def total(counts: Counter) -> int:
    return sum(counts.values())


def reconcile(expected: Counter, found: Counter, produced: int | None = None) -> dict:
    """One sink's line of the report."""
    return {
        "produced": total(expected) if produced is None else produced,
        "expected": total(expected),
        "found": total(found),
        "lost": total(expected - found),
        "duplicated": total(found - expected),
    }


def once(keys) -> Counter:
    return Counter(dict.fromkeys(keys, 1))


def reconcile_market(sent: Sent, lake: dict[str, pd.DataFrame], kafka: dict[str, int]) -> dict:
    """Every sink of the market pipeline against what was sent. `lake` holds the tables
    read back (Delta and Postgres), `kafka` the messages each topic holds."""
    silver = lake["trades_enriched"]
    silver_ids = Counter(silver["trade_id"])
    late_accepted = [t for t in silver_ids if t in sent.late]
    rejected = lake["quarantine_trades_enrichment"]
    on_time_rejected = rejected[rejected["trade_id"].isin(sent.on_time.keys())]
    late_rejected = rejected[rejected["trade_id"].isin(sent.late.keys())]
    references = sent.references + Counter({SENTINEL: 1})
    sinks = {
        "kafka.trades": reconcile(
            Counter(messages=sent.trade_messages), Counter(messages=kafka["trades"])
        ),
        "kafka.references": reconcile(
            Counter(messages=total(references)), Counter(messages=kafka["references"])
        ),
        "delta.bronze_trades": reconcile(
            sent.on_time + sent.late, Counter(lake["bronze_trades"]["trade_id"])
        ),
        "delta.bronze_company_reference": reconcile(
            references, Counter(lake["bronze_company_reference"]["symbol"])
        ),
        "delta.quarantine_market": reconcile(
            sent.malformed, Counter(lake["quarantine_market"]["reason"])
        ),
        # Each on-time trade once; a late one once if the stream accepted it.
        "delta.trades_enriched": reconcile(
            once(sent.on_time) + once(late_accepted),
            silver_ids,
            produced=len(sent.on_time) + len(sent.late),
        ),
        # Each repeated copy of an on-time trade, as a duplicate.
        "delta.quarantine_trades_enrichment": reconcile(
            Counter({(t, "duplicate_trade_id"): n for t, n in sent.repeats.items()}),
            Counter(zip(on_time_rejected["trade_id"], on_time_rejected["reason"], strict=True)),
        ),
        "postgres.trades_enriched": reconcile(
            silver_ids, Counter(lake["serving.trades_enriched"]["trade_id"])
        ),
        "postgres.trades_ohlcv_1m": reconcile(
            minute_counts(silver), bar_counts(lake["serving.trades_ohlcv_1m"])
        ),
        "postgres.trades_live_1m": reconcile(
            minute_counts(live_window(silver, lake["live_hours"])),
            bar_counts(lake["serving.trades_live_1m"]),
        ),
    }
    copies = total(sent.late)
    accepted, quarantined = len(late_accepted), len(late_rejected)
    late = {
        "copies_sent": copies,
        "accepted": accepted,
        "quarantined": quarantined,
        # What neither silver nor the quarantine holds: Spark dropped it behind the watermark.
        "dropped_by_watermark": copies - accepted - quarantined,
    }
    # Reference updates that reached the enrichment behind the watermark (after an outage a
    # batch can span more event time than the delay: docs/architecture.md, "Known gap").
    late["references_quarantined"] = int((rejected["reason"] == "late_reference").sum())
    return {"sinks": sinks, "late_trades": late}


def with_trade_ids(quarantine: pd.DataFrame) -> pd.DataFrame:
    """The quarantine keeps the refused row as JSON: its trade id (None for a reference)."""
    ids = [json.loads(raw).get("trade_id") for raw in quarantine["raw_value"]]
    return quarantine.assign(trade_id=pd.Series(ids, index=quarantine.index, dtype=object))


def minute_key(times: pd.Series) -> pd.Series:
    """UTC minute as text, from naive-UTC or zoned timestamps of any unit."""
    return pd.to_datetime(times, utc=True).dt.floor("min").dt.strftime("%Y-%m-%dT%H:%M")


def minute_counts(trades: pd.DataFrame) -> Counter:
    """Trades per (symbol, minute): what each one-minute bar must count."""
    return Counter(zip(trades["symbol"], minute_key(trades["event_time"]), strict=True))


def bar_counts(bars: pd.DataFrame) -> Counter:
    keys = zip(bars["symbol"], minute_key(bars["minute"]), strict=True)
    return Counter({key: int(n) for key, n in zip(keys, bars["trade_count"], strict=True) if n})


def live_window(trades: pd.DataFrame, hours: float) -> pd.DataFrame:
    """The trades the live bars keep: minutes within `hours` of the newest one."""
    minutes = pd.to_datetime(trades["event_time"], utc=True).dt.floor("min")
    return trades[minutes >= minutes.max() - pd.Timedelta(hours=hours)]


def passed(report: dict) -> bool:
    return (
        all(s["lost"] == 0 and s["duplicated"] == 0 for s in report["sinks"].values())
        and report["late_trades"]["dropped_by_watermark"] >= 0
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


class ChaosRun:
    def __init__(self, settings: Settings, plan: Plan, log: Log = print) -> None:
        self.settings = settings
        self.plan = plan
        self.log = log
        self.rng = random.Random(plan.seed)
        self.layout = Layout(settings, f"chaos{uuid.uuid4().hex[:8]}")
        self.job = self.layout.registry.job(JOB)
        self.job_key = self.job.key(self.layout.namespace)
        self.began = time.monotonic()
        self.faults: list[dict] = []
        self._stop_supervisor = threading.Event()

    # -- the platform's state

    def driver(self) -> Driver | None:
        """None while Postgres does not answer."""
        from lakehouse.drivers import connect, lock_holder
        from lakehouse.supervision import committed_batches

        try:
            with connect(self.settings) as conn:
                row = conn.execute(
                    "SELECT pgid FROM stream_drivers WHERE job_key = %s", (self.job_key,)
                ).fetchone()
                return Driver(
                    alive=lock_holder(conn, self.job_key) is not None,
                    batches=committed_batches(conn, self.job_key),
                    pgid=row[0] if row else None,
                )
        except psycopg.OperationalError:
            return None

    def wait_recovered(self, batches_before: int, since: float) -> float | None:
        """Seconds from `since` until a driver holds the lock and has committed a batch past
        `batches_before`; None when that does not happen within the plan's timeout."""
        deadline = since + self.plan.recovery_timeout_s
        while time.monotonic() < deadline:
            state = self.driver()
            if state and state.alive and state.batches > batches_before:
                return round(time.monotonic() - since, 1)
            time.sleep(0.5)
        return None

    def _now(self) -> float:
        return round(time.monotonic() - self.began, 1)

    # -- what keeps running

    def create_topics(self) -> None:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
        try:
            admin.create_topics(
                {
                    self.layout.topic(t.name): {"num_partitions": TOPIC_PARTITIONS}
                    for p in self.job.pipelines
                    for t in p.topics
                }
            )
        finally:
            admin.close()

    def _supervise(self) -> None:
        from lakehouse.supervision import supervise

        while not self._stop_supervisor.wait(self.plan.supervisor_cycle_s):
            try:
                decision = supervise(self.settings, self.job, self.layout.namespace)
            except Exception as error:  # a service is down: the next cycle tries again
                self.log(f"supervisor: {str(error).splitlines()[0][:200]}")
                continue
            if decision.action is not Action.HEALTHY:
                self.log(f"supervisor: {decision.action} ({decision.reason})")

    def start_producer(self) -> subprocess.Popen:
        from lakehouse.pipelines.market import REFERENCE_TOPIC, TRADES_TOPIC

        options = self.plan.simulator()
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "producers.market",
                f"--rate={self.plan.rate}",
                f"--trades-topic={self.layout.topic(TRADES_TOPIC)}",
                f"--reference-topic={self.layout.topic(REFERENCE_TOPIC)}",
                *flags,
            ],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )

    # -- the faults

    def kill_driver(self) -> dict:
        state = self.driver()
        if not state or not state.alive or not state.pgid:
            raise ChaosError("the driver is not running when it should be killed")
        at = time.monotonic()
        os.killpg(state.pgid, signal.SIGKILL)
        return {
            "mid_batch": batch_in_flight(Path(self.layout.checkpoint("market_bronze"))),
            "recovered_s": self.wait_recovered(state.batches, at),
        }

    def restart_service(self, name: str) -> dict:
        from control import platform

        service = next(s for s in platform.services(self.settings, demo=False) if s.name == name)
        state = self.driver()
        before = state.batches if state else 0
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
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "lakehouse.serving_sync"),
                *("--namespace", self.layout.namespace, "--pipeline", "market"),
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

        landed = False
        for attempt in range(1, attempts + 1):
            # Negative: today's partition counts as closed, so there is something to compact.
            request = maintenance.submit(
                self.settings, self.job_key, "bronze_trades", "optimize", closed_after_hours=-24
            )
            status = self._wait_request(request, ("running", "done", "failed"))
            if status == "running":
                state = self.driver()
                if state and state.alive and state.pgid:
                    before, at = state.batches, time.monotonic()
                    os.killpg(state.pgid, signal.SIGKILL)
                    landed = True
                    break
            self.log(f"chaos: the OPTIMIZE was {status} before it was caught (try {attempt})")
            time.sleep(10)
        if not landed:
            return {"landed_during_optimize": False, "attempts": attempt, "recovered_s": None}
        recovered = self.wait_recovered(before, at)
        # The new driver takes the interrupted request up again.
        result = maintenance.wait(self.settings, [request], self.plan.recovery_timeout_s)
        return {
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

    def send_sentinel(self) -> None:
        from kafka import KafkaProducer

        from lakehouse.pipelines.market import REFERENCE_TOPIC

        value = {
            "schema_version": 1,
            "symbol": SENTINEL,
            "company_name": "Sentinel",
            "sector": "Sentinel",
            "event_timestamp": int(time.time() * 1000) + 24 * 3600 * 1000,
        }
        producer = KafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, acks="all")
        try:
            producer.send(
                self.layout.topic(REFERENCE_TOPIC),
                key=SENTINEL.encode(),
                value=json.dumps(value).encode(),
            )
            producer.flush()
        finally:
            producer.close()

    def read_delta(self, table: str, columns: list[str]) -> pd.DataFrame:
        from lakehouse.serving_sync import open_table, plain_strings

        found = open_table(self.settings, self.layout.table(table))
        if found is None:
            return pd.DataFrame(columns=columns)
        return plain_strings(found.to_pyarrow_table(columns=columns)).to_pandas()

    def read_postgres(self, table: str, columns: list[str]) -> pd.DataFrame:
        with psycopg.connect(self.settings.postgres_dsn()) as conn:
            rows = conn.execute(
                f"SELECT {', '.join(columns)} FROM {self.layout.serving_schema}.{table}"
            ).fetchall()
        return pd.DataFrame(rows, columns=columns)

    def drain(self, sent: Sent, timeout_s: float = 600.0) -> None:
        """Until silver holds every on-time trade and nothing moves for one more cycle."""
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            silver = self.read_delta("trades_enriched", ["trade_id"])
            present = silver["trade_id"].isin(sent.on_time.keys()).sum()
            counts = (len(silver), len(self.read_delta("quarantine_trades_enrichment", ["reason"])))
            if present >= len(sent.on_time) and counts == last:
                return
            self.log(f"chaos: draining, {present}/{len(sent.on_time)} on-time trades in silver")
            last = counts
            time.sleep(5)
        self.log("chaos: silver did not settle in time; reconciling what is there")

    def kafka_messages(self) -> dict[str, int]:
        from lakehouse.pipelines.market import REFERENCE_TOPIC, TRADES_TOPIC
        from spark.kafka_offsets import latest_offsets

        return {
            kind: sum(
                latest_offsets(
                    self.settings,
                    [(self.layout.topic(topic), p) for p in range(TOPIC_PARTITIONS)],
                ).values()
            )
            for kind, topic in (("trades", TRADES_TOPIC), ("references", REFERENCE_TOPIC))
        }

    def read_back(self) -> dict:
        from spark.jobs.market.live_bars import LIVE_BARS, LIVE_HOURS

        bars = ["symbol", "minute", "trade_count"]
        return {
            "bronze_trades": self.read_delta("bronze_trades", ["trade_id"]),
            "bronze_company_reference": self.read_delta("bronze_company_reference", ["symbol"]),
            "quarantine_market": self.read_delta("quarantine_market", ["reason"]),
            "trades_enriched": self.read_delta(
                "trades_enriched", ["trade_id", "symbol", "event_time"]
            ),
            "quarantine_trades_enrichment": with_trade_ids(
                self.read_delta("quarantine_trades_enrichment", ["reason", "raw_value"])
            ),
            "serving.trades_enriched": self.read_postgres("trades_enriched", ["trade_id"]),
            "serving.trades_ohlcv_1m": self.read_postgres("trades_ohlcv_1m", bars),
            "serving.trades_live_1m": self.read_postgres(LIVE_BARS, bars),
            "live_hours": LIVE_HOURS,
        }

    def stop_driver(self) -> None:
        from lakehouse.supervision import set_desired, stop

        set_desired(self.settings, self.job_key, "stopped")
        stop(self.settings, self.job_key)

    def run(self) -> dict:
        from lakehouse.supervision import set_desired

        faults = schedule(self.plan, self.rng)
        self.log(
            f"chaos: namespace {self.layout.namespace}, {len(faults)} faults, "
            f"{self.plan.rate:.0f} events/s"
        )
        self.create_topics()
        set_desired(self.settings, self.job_key, "running")
        threading.Thread(target=self._supervise, name="supervisor", daemon=True).start()
        try:
            produced = self.inject_all(faults)
            sent = regenerate(self.plan.simulator(), produced["sent"]["total"])
            self.send_sentinel()
            self.drain(sent)
            self.sync()
            result = reconcile_market(sent, self.read_back(), self.kafka_messages())
        finally:
            self._stop_supervisor.set()
            self.stop_driver()
        report = {
            "benchmark": "chaos",
            "namespace": self.layout.namespace,
            "plan": asdict(self.plan),
            "seconds": self._now(),
            "producer": produced,
            "faults": self.faults,
            "recovery_s": recovery_summary(self.faults),
            **result,
        }
        report["passed"] = passed(report)
        return report

    def inject_all(self, faults: list[str]) -> dict:
        """The faults one after another while the producer sends; returns its report."""
        producer = self.start_producer()
        try:
            first = self.wait_recovered(0, time.monotonic())
            if first is None:
                raise ChaosError(f"{self.job_key} did not commit a first batch")
            self.log(f"chaos: first batch after {first} s")
            for number, fault in enumerate(faults, start=1):
                time.sleep(self.rng.uniform(*self.plan.gap_s))
                outcome = {"fault": fault, "at_s": self._now(), **self.inject(fault)}
                self.faults.append(outcome)
                self.log(f"chaos: {number}/{len(faults)} {json.dumps(outcome)}")
                if outcome["recovered_s"] is None and outcome.get("landed_during_optimize", 1):
                    raise ChaosError(f"no recovery from {fault} within the timeout")
        finally:
            producer.send_signal(signal.SIGTERM)
            out, _ = producer.communicate(timeout=120)
        lines = out.strip().splitlines()
        if not lines or "sent" not in (produced := json.loads(lines[-1])):
            raise ChaosError(f"the producer printed no report (exit {producer.returncode})")
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
    Starts it, runs the chaos there, stops it; returns the chaos run's exit code."""
    from control.platform import side_platform_env

    env = side_platform_env(CHAOS_HOME, CHAOS_PORT_SHIFT)
    cli = str(Path(sys.executable).parent / "lakehouse")
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
