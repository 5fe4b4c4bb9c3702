"""Market data simulator: random-walk trades and company reference updates to Kafka.

Event generation is pure (same seed -> same events); sending is the I/O edge. Every
message is JSON with a ``schema_version`` and keyed by symbol, so one symbol's events keep
their order within a partition.
"""

from __future__ import annotations

import json
import random
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import typer

SCHEMA_VERSION = 1
TRADES_TOPIC = "stock-trades"
REFERENCE_TOPIC = "stock-info"
SECTORS = ("Technology", "Financials", "Energy", "Health Care", "Industrials", "Utilities")


@dataclass
class MarketSimulator:
    symbols: int = 500
    seed: int = 42
    reference_every: int = 200  # one reference update per this many trades
    _rng: random.Random = field(init=False)
    _prices: dict[str, float] = field(init=False)
    _trade_no: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._prices = {self.symbol(i): self._rng.uniform(10, 500) for i in range(self.symbols)}

    @staticmethod
    def symbol(index: int) -> str:
        letters = ""
        index += 1
        while index:
            index, rem = divmod(index - 1, 26)
            letters = chr(65 + rem) + letters
        return letters.rjust(3, "X")

    def reference(self, symbol: str, event_ms: int) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
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
            "schema_version": SCHEMA_VERSION,
            "trade_id": f"{self.seed}-{self._trade_no}",
            "symbol": symbol,
            "price": round(price, 4),
            "volume": self._rng.randint(1, 1000),
            "event_timestamp": event_ms,
        }

    def events(self, start_ms: int, step_ms: int = 1) -> Iterator[tuple[str, dict]]:
        """(topic, event) forever: every symbol's reference first, then trades."""
        names = list(self._prices)
        now = start_ms
        for name in names:
            yield REFERENCE_TOPIC, self.reference(name, now)
        while True:
            now += step_ms
            name = self._rng.choice(names)
            if self._rng.randrange(self.reference_every) == 0:
                yield REFERENCE_TOPIC, self.reference(name, now)
            else:
                yield TRADES_TOPIC, self.trade(name, now)


def main(
    rate: float = typer.Option(50.0, help="events per second (0: as fast as possible)"),
    count: int = typer.Option(0, help="stop after this many events (0: run until stopped)"),
    symbols: int = typer.Option(500, min=1),
    seed: int = typer.Option(42),
) -> None:
    """Send simulated trades and reference updates to Kafka."""
    from kafka import KafkaProducer
    from kafka.errors import NoBrokersAvailable

    from lakehouse.settings import load_settings

    settings = load_settings()
    # The supervisor stops us with SIGTERM: exit through `finally` so buffered events flush.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        producer = KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            key_serializer=str.encode,
            value_serializer=lambda v: json.dumps(v, separators=(",", ":")).encode(),
            linger_ms=20,
            acks="all",
        )
    except NoBrokersAvailable:
        typer.echo(f"Kafka is not reachable at {settings.kafka_bootstrap}: run `make up` first.")
        raise typer.Exit(2) from None
    simulator = MarketSimulator(symbols=symbols, seed=seed)
    sent = {TRADES_TOPIC: 0, REFERENCE_TOPIC: 0}
    started = time.monotonic()
    start_ms = int(datetime.now(UTC).timestamp() * 1000)
    try:
        for n, (topic, event) in enumerate(simulator.events(start_ms), start=1):
            if rate > 0:
                # Event time follows wall time at the requested rate.
                event["event_timestamp"] = int(time.time() * 1000)
            producer.send(topic, key=event["symbol"], value=event)
            sent[topic] += 1
            if count and n >= count:
                break
            if rate > 0:
                delay = started + n / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
    except KeyboardInterrupt:
        pass
    finally:
        producer.flush()
        producer.close()
        print(json.dumps({"sent": sent}), file=sys.stderr)


if __name__ == "__main__":
    typer.run(main)
