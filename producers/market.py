"""Market data simulator: random-walk trades and company reference updates to Kafka.

Event generation is pure (same seed and start time -> byte-identical messages); sending is
the I/O edge. Messages are JSON with a `schema_version` (the market's contracts in
lakehouse/pipelines/market.py), keyed by symbol so one symbol's events keep their order
within a partition. On request it mixes in late trades, exact duplicates and malformed
records, and at the end prints one JSON line saying how many of each it sent, so tests and
benchmarks can reconcile every count.

    python -m producers.market --count 100000 --rate 0 --seed 7 --malformed-fraction 0.01
"""

from __future__ import annotations

import json
import random
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import typer

from lakehouse.pipelines.market import REFERENCE, REFERENCE_TOPIC, TRADE, TRADES_TOPIC

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
    _rng: random.Random = field(init=False)
    _prices: dict[str, float] = field(init=False)
    _recent: deque = field(init=False)
    _trade_no: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.symbols > MAX_SYMBOLS:
            raise ValueError(f"at most {MAX_SYMBOLS:,} symbols fit in five letters")
        self._rng = random.Random(self.seed)
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
            "trade_id": f"{self.seed}-{self._trade_no}",
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


def main(
    rate: float = typer.Option(50.0, min=0.0, help="messages per second (0: as fast as possible)"),
    count: int = typer.Option(0, min=0, help="stop after this many messages (0: no limit)"),
    duration: float = typer.Option(0.0, min=0.0, help="stop after this many seconds (0: no limit)"),
    symbols: int = typer.Option(500, min=1),
    seed: int = typer.Option(42),
    start_ms: int = typer.Option(0, help="event time of the first message (0: now)"),
    step_ms: int = typer.Option(1, min=1, help="event time between messages, without --rate"),
    reference_every: int = typer.Option(200, min=1, help="one reference update per N trades"),
    late_fraction: float = typer.Option(0.0, min=0.0, max=1.0),
    late_by_ms: int = typer.Option(3_600_000, min=1, help="how far behind late trades are"),
    duplicate_fraction: float = typer.Option(0.0, min=0.0, max=1.0),
    malformed_fraction: float = typer.Option(0.0, min=0.0, max=1.0),
    trades_topic: str = typer.Option(TRADES_TOPIC),
    reference_topic: str = typer.Option(REFERENCE_TOPIC),
) -> None:
    """Send simulated trades and reference updates to Kafka; print what was sent as JSON."""
    from kafka.errors import KafkaError

    from lakehouse.settings import load_settings

    settings = load_settings()
    # The supervisor stops us with SIGTERM: leave through `finally` so buffered messages flush.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    topics = {"trades": trades_topic, "references": reference_topic}
    try:
        missing = missing_topics(settings.kafka_bootstrap, list(topics.values()))
        producer = open_producer(settings.kafka_bootstrap)
    except KafkaError:
        typer.echo(f"Kafka is not reachable at {settings.kafka_bootstrap}: run `make up` first.")
        raise typer.Exit(2) from None
    if missing:
        producer.close()
        typer.echo(
            f"Topic {', '.join(missing)} does not exist on {settings.kafka_bootstrap} "
            "(the broker does not create topics on first use): create it, or pass "
            "--trades-topic/--reference-topic with an existing one."
        )
        raise typer.Exit(2)
    simulator = MarketSimulator(
        symbols=symbols,
        seed=seed,
        reference_every=reference_every,
        late_fraction=late_fraction,
        duplicate_fraction=duplicate_fraction,
        malformed_fraction=malformed_fraction,
        late_by_ms=late_by_ms,
    )
    live = rate > 0 and not start_ms
    first_ms = start_ms or int(time.time() * 1000)
    clock = (lambda: int(time.time() * 1000)) if live else None
    report, started = SendReport(), time.monotonic()
    try:
        send_all(
            producer,
            simulator.messages(first_ms, clock, step_ms),
            topics,
            report,
            count=count,
            duration=duration,
            rate=rate,
        )
    finally:
        producer.close()
        print(json.dumps(report.as_dict(time.monotonic() - started)), flush=True)


def self_check(message: Message) -> str | None:
    """The quarantine reason the bronze job should give this message (None: accepted)."""
    try:
        record = json.loads(message.value)
    except ValueError:
        return "unparseable_or_mistyped"
    return (TRADE if message.topic == "trades" else REFERENCE).violation(record)


if __name__ == "__main__":
    typer.run(main)
