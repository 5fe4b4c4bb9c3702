"""Market data simulator: random-walk trades and company reference updates to Kafka.

Event generation is pure (same seed and start time -> byte-identical messages); sending is
the I/O edge. Messages are JSON with a `schema_version` (the market's contracts in
lakehouse/pipelines/market.py), keyed by symbol so one symbol's events keep their order
within a partition. On request it mixes in late trades, exact duplicates and malformed
records, and at the end prints one JSON line saying how many of each it sent, so tests and
benchmarks can reconcile every count.

    python -m producers.market --count 100000 --rate 0 --seed 7 --malformed-fraction 0.01

One process sends about 16-19k events/s next to a running platform; `--processes N` splits
the rate, the count and the duration's messages over N processes, each its own simulator
(worker k of the seed: its own random stream and trade ids `seed-k-n`), so a run is still
the same for the same seed and N.
"""

from __future__ import annotations

import json
import queue
import random
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import typer

from lakehouse.pipelines.market import REFERENCE, REFERENCE_TOPIC, TRADE, TRADES_TOPIC
from producers.seeds import SEED_HELP, run_seed

SECTORS = ("Technology", "Financials", "Energy", "Health Care", "Industrials", "Utilities")
EXCHANGES = ("XNAS", "XNYS", "ARCX")
# Malformed record kinds, named by the quarantine reason the bronze job gives them.
MALFORMED_KINDS = (
    "unparseable_or_mistyped",
    "missing_price",
    "price_not_positive",
    "volume_negative",
    "symbol_format",
    "unknown_schema_version",
)


@dataclass(frozen=True)
class Message:
    kind: str  # trades | references | duplicates | late | malformed
    topic: str  # "trades" or "references": the caller maps it to a real topic name
    key: bytes
    value: bytes
    reason: str | None = None  # for malformed: the quarantine reason it should get


def _json(record: dict) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


def symbol_name(index: int) -> str:
    """0 -> AAA, 1 -> AAB, ..., then four and five letters: always valid for SYMBOL_PATTERN."""
    width = 3
    while index >= 26**width:
        index -= 26**width
        width += 1
    letters = []
    for _ in range(width):
        index, rem = divmod(index, 26)
        letters.append(chr(65 + rem))
    return "".join(reversed(letters))


MAX_SYMBOLS = 26**3 + 26**4 + 26**5


@dataclass
class MarketSimulator:
    symbols: int = 500
    seed: int = 42
    reference_every: int = 200  # one reference update per this many trades
    late_fraction: float = 0.0
    duplicate_fraction: float = 0.0
    malformed_fraction: float = 0.0
    late_by_ms: int = 3_600_000
    worker: int | None = None  # one of several processes of a run (None: the only one)
    _rng: random.Random = field(init=False)
    _prices: dict[str, float] = field(init=False)
    _recent: deque = field(init=False)
    _trade_no: int = field(init=False, default=0)
    _id_prefix: str = field(init=False)

    def __post_init__(self) -> None:
        if self.symbols > MAX_SYMBOLS:
            raise ValueError(f"at most {MAX_SYMBOLS:,} symbols fit in five letters")
        alone = self.worker is None
        # A string seed is hashed the same way in every process (unlike hash()).
        self._rng = random.Random(self.seed if alone else f"{self.seed}/{self.worker}")
        self._id_prefix = str(self.seed) if alone else f"{self.seed}-{self.worker}"
        self._prices = {symbol_name(i): self._rng.uniform(10, 500) for i in range(self.symbols)}
        self._recent = deque(maxlen=1000)  # trades a duplicate may repeat

    def reference(self, symbol: str, event_ms: int) -> dict:
        return {
            "schema_version": REFERENCE.latest.version,
            "symbol": symbol,
            "company_name": f"{symbol.title()} Holdings {self._rng.randint(1, 9)}",
            "sector": self._rng.choice(SECTORS),
            "event_timestamp": event_ms,
        }

    def trade(self, symbol: str, event_ms: int) -> dict:
        price = max(0.01, self._prices[symbol] * (1 + self._rng.gauss(0, 0.002)))
        self._prices[symbol] = price
        self._trade_no += 1
        return {
            "schema_version": TRADE.latest.version,
            "trade_id": f"{self._id_prefix}-{self._trade_no}",
            "symbol": symbol,
            "price": round(price, 4),
            "volume": self._rng.randint(1, 1000),
            "event_timestamp": event_ms,
            "exchange": self._rng.choice(EXCHANGES),
        }

    def malformed(self, symbol: str, event_ms: int) -> Message:
        reason = self._rng.choice(MALFORMED_KINDS)
        if reason == "unparseable_or_mistyped":
            return Message(
                "malformed", "trades", symbol.encode(), b'{"symbol": "' + symbol.encode(), reason
            )
        record = self.trade(symbol, event_ms)
        if reason == "missing_price":
            del record["price"]
        elif reason == "price_not_positive":
            record["price"] = -abs(record["price"])
        elif reason == "volume_negative":
            record["volume"] = -record["volume"]
        elif reason == "symbol_format":
            record["symbol"] = symbol.lower() + "!"
        elif reason == "unknown_schema_version":
            record["schema_version"] = 99
        return Message("malformed", "trades", symbol.encode(), _json(record), reason)

    def messages(self, start_ms: int, clock=None, step_ms: int = 1) -> Iterator[Message]:
        """Every symbol's reference first, then trades and updates, forever.

        Event time advances `step_ms` per message from `start_ms`, or follows `clock()` (ms)
        when given (live feeds).
        """
        names = list(self._prices)
        rng = self._rng
        now = start_ms
        for name in names:
            yield Message(
                "references", "references", name.encode(), _json(self.reference(name, now))
            )
        while True:
            now = clock() if clock else now + step_ms
            name = rng.choice(names)
            key = name.encode()
            draw = rng.random()
            if rng.randrange(self.reference_every) == 0:
                yield Message("references", "references", key, _json(self.reference(name, now)))
            elif draw < self.malformed_fraction:
                yield self.malformed(name, now)
            elif draw < self.malformed_fraction + self.duplicate_fraction and self._recent:
                yield replace(rng.choice(self._recent), kind="duplicates")
            else:
                late = draw < self.malformed_fraction + self.duplicate_fraction + self.late_fraction
                record = self.trade(name, now - self.late_by_ms if late else now)
                message = Message("late" if late else "trades", "trades", key, _json(record))
                self._recent.append(message)
                yield message


@dataclass
class SendReport:
    counts: Counter = field(default_factory=Counter)
    malformed_by_reason: Counter = field(default_factory=Counter)

    def add(self, message: Message) -> None:
        self.counts[message.kind] += 1
        if message.reason:
            self.malformed_by_reason[message.reason] += 1

    def merge(self, other: SendReport) -> None:
        """Add another process's counts to these."""
        self.counts.update(other.counts)
        self.malformed_by_reason.update(other.malformed_by_reason)

    def as_dict(self, seconds: float) -> dict:
        total = sum(self.counts.values())
        sent = {
            k: self.counts.get(k, 0)
            for k in ("trades", "references", "duplicates", "late", "malformed")
        }
        return {
            "sent": {**sent, "malformed_by_reason": dict(self.malformed_by_reason), "total": total},
            "seconds": round(seconds, 3),
            "events_per_s": round(total / seconds) if seconds > 0 else None,
        }


def open_producer(bootstrap: str):
    """A KafkaProducer tuned for throughput: large lz4 batches, acks from all replicas.

    Raises KafkaError when the broker does not answer."""
    from kafka import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",  # with idempotence (kafka-python's default): retries never duplicate
        compression_type="lz4",
        linger_ms=20,
        batch_size=256 * 1024,
        bootstrap_timeout_ms=10_000,
        max_block_ms=10_000,  # how long send() waits for metadata or buffer space
    )


def missing_topics(bootstrap: str, topics: list[str]) -> list[str]:
    """The topics the broker does not know (auto-create is off on the platform's broker)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, bootstrap_timeout_ms=10_000)
    try:
        existing = set(admin.list_topics())
    finally:
        admin.close()
    return [topic for topic in topics if topic not in existing]


def send_all(
    producer,
    messages: Iterator[Message],
    topics: dict[str, str],
    report: SendReport,
    *,
    count: int = 0,
    duration: float = 0.0,
    rate: float = 0.0,
) -> None:
    """Send until `count` messages or `duration` seconds (0: no limit) at `rate` messages/s
    (0: as fast as possible), then flush. `report` counts what was handed to the producer,
    also when a signal ends the loop early."""
    started = time.monotonic()
    try:
        for n, message in enumerate(messages, start=1):
            producer.send(topics[message.topic], key=message.key, value=message.value)
            report.add(message)
            if not keep_sending(n, started, count=count, duration=duration, rate=rate):
                break
    except KeyboardInterrupt:
        pass
    finally:
        producer.flush()


def keep_sending(
    n: int,
    started: float,
    *,
    count: int,
    duration: float,
    rate: float,
    wait: Callable[[float], bool] | None = None,
) -> bool:
    """After the n-th message of a run that began at `started` (time.monotonic): False once
    `count` messages or `duration` seconds (0: no limit) are reached; otherwise waits for the
    next message's slot at `rate` messages/s (0: none) and says True. `wait(seconds)` returns
    True when it was interrupted (a stop event); time.sleep by default."""
    if count and n >= count:
        return False
    elapsed = time.monotonic() - started
    if duration and elapsed >= duration:
        return False
    delay = n / rate - elapsed if rate > 0 else 0.0
    if delay > 0:
        if wait is None:
            time.sleep(delay)
        elif wait(delay):
            return False
    return True


@dataclass(frozen=True)
class Run:
    """What one producer process sends: its simulator's options and its share of the run."""

    simulator: dict
    topics: dict[str, str]
    rate: float
    count: int
    duration: float
    start_ms: int
    step_ms: int


def split(run: Run, processes: int) -> list[Run]:
    """The run spread over `processes` workers: worker k gets its own simulator stream, the
    k-th share of the count and of the rate, and the whole duration."""
    if processes == 1:
        return [run]
    shares = [run.count // processes + (k < run.count % processes) for k in range(processes)]
    if run.count and 0 in shares:
        raise ValueError(f"--count {run.count} is less than one message per process")
    return [
        replace(
            run,
            simulator={**run.simulator, "worker": k},
            rate=run.rate / processes,
            count=shares[k],
        )
        for k in range(processes)
    ]


def send_run(bootstrap: str, run: Run, report: SendReport) -> None:
    """One process's part; `report` counts what it handed to the producer, also when a
    signal ends it early."""
    producer = open_producer(bootstrap)
    simulator = MarketSimulator(**run.simulator)
    live = run.rate > 0 and not run.start_ms
    first_ms = run.start_ms or int(time.time() * 1000)
    clock = (lambda: int(time.time() * 1000)) if live else None
    try:
        send_all(
            producer,
            simulator.messages(first_ms, clock, run.step_ms),
            run.topics,
            report,
            count=run.count,
            duration=run.duration,
            rate=run.rate,
        )
    finally:
        producer.close()


def _worker(bootstrap: str, run: Run, results) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    report = SendReport()
    try:
        send_run(bootstrap, run, report)
    finally:
        results.put(report)


def send_in_processes(bootstrap: str, runs: list[Run], total: SendReport) -> None:
    """Every run in its own process (fork: the workers share nothing but the queue), their
    reports added to `total`. Stopped by SIGTERM, we pass it on and wait for their reports,
    so what they sent is still counted."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    results = context.Queue()
    workers = [context.Process(target=_worker, args=(bootstrap, run, results)) for run in runs]
    for worker in workers:
        worker.start()
    pending = len(workers)
    try:
        while pending:
            try:
                part = results.get(timeout=1)
            except queue.Empty:
                if not any(worker.is_alive() for worker in workers):
                    break  # a worker died without a report (killed): nothing more will come
                continue
            total.merge(part)
            pending -= 1
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()  # SIGTERM: it flushes and reports
        for _ in range(pending):
            try:
                part = results.get(timeout=30)
            except queue.Empty:
                break
            total.merge(part)
        for worker in workers:
            worker.join()


def main(
    rate: float = typer.Option(50.0, min=0.0, help="messages per second (0: as fast as possible)"),
    count: int = typer.Option(0, min=0, help="stop after this many messages (0: no limit)"),
    duration: float = typer.Option(0.0, min=0.0, help="stop after this many seconds (0: no limit)"),
    symbols: int = typer.Option(500, min=1),
    seed: int | None = typer.Option(None, help=SEED_HELP),
    start_ms: int = typer.Option(0, help="event time of the first message (0: now)"),
    step_ms: int = typer.Option(1, min=1, help="event time between messages, without --rate"),
    reference_every: int = typer.Option(200, min=1, help="one reference update per N trades"),
    late_fraction: float = typer.Option(0.0, min=0.0, max=1.0),
    late_by_ms: int = typer.Option(3_600_000, min=1, help="how far behind late trades are"),
    duplicate_fraction: float = typer.Option(0.0, min=0.0, max=1.0),
    malformed_fraction: float = typer.Option(0.0, min=0.0, max=1.0),
    processes: int = typer.Option(
        1, min=1, max=64, help="send from this many processes (the rate and count split)"
    ),
    trades_topic: str = typer.Option(TRADES_TOPIC),
    reference_topic: str = typer.Option(REFERENCE_TOPIC),
) -> None:
    """Send simulated trades and reference updates to Kafka; print what was sent as JSON."""
    from kafka.errors import KafkaError

    from lakehouse.settings import load_settings

    seed = run_seed(seed)
    settings = load_settings()
    # The supervisor stops us with SIGTERM: leave through `finally` so buffered messages flush.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    topics = {"trades": trades_topic, "references": reference_topic}
    try:
        missing = missing_topics(settings.kafka_bootstrap, list(topics.values()))
    except KafkaError:
        typer.echo(f"Kafka is not reachable at {settings.kafka_bootstrap}: run `make up` first.")
        raise typer.Exit(2) from None
    if missing:
        typer.echo(
            f"Topic {', '.join(missing)} does not exist on {settings.kafka_bootstrap} "
            "(the broker does not create topics on first use): create it, or pass "
            "--trades-topic/--reference-topic with an existing one."
        )
        raise typer.Exit(2)
    run = Run(
        simulator={
            "symbols": symbols,
            "seed": seed,
            "reference_every": reference_every,
            "late_fraction": late_fraction,
            "duplicate_fraction": duplicate_fraction,
            "malformed_fraction": malformed_fraction,
            "late_by_ms": late_by_ms,
        },
        topics=topics,
        rate=rate,
        count=count,
        duration=duration,
        start_ms=start_ms,
        step_ms=step_ms,
    )
    try:
        runs = split(run, processes)
    except ValueError as error:
        typer.echo(str(error))
        raise typer.Exit(2) from None
    started = time.monotonic()
    report = SendReport()
    try:
        if processes == 1:
            send_run(settings.kafka_bootstrap, run, report)
        else:
            send_in_processes(settings.kafka_bootstrap, runs, report)
    except KafkaError as error:
        typer.echo(f"Kafka at {settings.kafka_bootstrap} stopped answering: {error}")
        raise typer.Exit(2) from None
    finally:
        # The seed and the message count regenerate the stream (the chaos run's audit).
        summary = {**report.as_dict(time.monotonic() - started), "seed": seed}
        print(json.dumps(summary), flush=True)


def self_check(message: Message) -> str | None:
    """The quarantine reason the bronze job should give this message (None: accepted)."""
    try:
        record = json.loads(message.value)
    except ValueError:
        return "unparseable_or_mistyped"
    return (TRADE if message.topic == "trades" else REFERENCE).violation(record)


if __name__ == "__main__":
    typer.run(main)
