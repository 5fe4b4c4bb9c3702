"""What a pipeline gives the chaos run (control/chaos.py) so that its sinks are proven exactly
once under faults: a live producer with duplicates, late and malformed records, a way to push
event time past everything it sent, and the reconciliation of every sink with what it sent.

A pipeline declares its audit in the registry (`Pipeline.audit`, "module:attribute"); the
chaos run imports it, starts its producer beside the others, kills the pipelines' drivers
and restarts the services, then reconciles. Only `close_event_time` and `read_back` do I/O;
`settled` and `reconcile` are pure, unit-tested without Spark or services.

The rule every audit follows: the first tables (bronze, the Kafka topics) against the
producer's own report (its stream is deterministic per seed, so the report's message count
regenerates every id it sent); the derived sinks against an oracle computed from what bronze
holds (event times come from the wall clock, so only bronze knows them).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pandas as pd

    from lakehouse.layout import Layout
    from lakehouse.settings import Settings


class Lake(Protocol):
    """The chaos run's readers of one namespace's sinks."""

    settings: Settings
    layout: Layout

    def delta(self, table: str, columns: list[str]) -> pd.DataFrame:
        """A registered Delta table's columns (empty frame when the table does not exist)."""
        ...

    def postgres(self, table: str, columns: list[str]) -> pd.DataFrame:
        """A table of the namespace's serving schema."""
        ...

    def kafka_values(self, topic: str) -> list[bytes]:
        """Every committed message value of a registered topic (read_committed)."""
        ...

    def mongo(self, collection: str) -> list[dict]:
        """Every document of a registered collection of the namespace."""
        ...


class ChaosAudit(Protocol):
    def open_event_time(self, settings: Settings, layout: Layout) -> bool:
        """Before the producer starts: True when it sent a record the pipeline's first batch
        must read (a primer at the current time), so that every later batch has a watermark
        (the first has none, and would take late records). The run then starts the producer
        only once the pipeline's Kafka queries have read it."""
        ...

    def producer_command(
        self, settings: Settings, layout: Layout, rate: float, seed: int
    ) -> list[str]:
        """argv of a live producer for the namespace: runs until SIGTERM, then prints its
        JSON report as its last line on stdout."""
        ...

    def close_event_time(self, settings: Settings, layout: Layout, produced: dict) -> None:
        """After the producer stopped: make the pipeline emit everything it holds back (a
        sentinel event far ahead moves the watermarks past every window and timeout)."""
        ...

    def read_back(self, lake: Lake) -> dict[str, Any]:
        """Every sink's content that `settled` and `reconcile` need."""
        ...

    def settled(self, produced: dict, found: dict[str, Any]) -> bool:
        """Whether the last sinks hold everything they will (the run polls until they do)."""
        ...

    def reconcile(self, produced: dict, found: dict[str, Any]) -> dict:
        """{"sinks": {sink name: reconcile(...)}, ...}: one line per sink, plus what else the
        report should say (e.g. late records counted); sink names are unique in the platform
        ("delta.TABLE", "postgres.TABLE", "kafka.TOPIC", "mongo.COLLECTION"). An optional
        "problems" list of sentences fails the run too (a check no sink line expresses)."""
        ...


def send_record(settings: Settings, topic: str, key: str, record: dict) -> None:
    """One JSON record to a topic, acknowledged by every replica (a primer or a sentinel)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    try:
        producer.send(topic, key=key.encode(), value=json.dumps(record).encode())
        producer.flush()
    finally:
        producer.close()


def total(counts: Counter) -> int:
    return sum(counts.values())


def reconcile(expected: Counter, found: Counter, produced: int | None = None) -> dict:
    """One sink's line of the chaos report: `lost` is what is expected and missing,
    `duplicated` what is found beyond the expected (a second copy, or a row nobody sent)."""
    return {
        "produced": total(expected) if produced is None else produced,
        "expected": total(expected),
        "found": total(found),
        "lost": total(expected - found),
        "duplicated": total(found - expected),
    }


def once(keys: Iterable) -> Counter:
    return Counter(dict.fromkeys(keys, 1))
