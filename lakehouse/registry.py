"""The pipelines' shared resources: adding a pipeline adds entries here, not platform code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int | None = None  # None: settings.kafka_default_partitions
    retention_ms: int = 7 * 24 * 3600 * 1000


TOPICS: tuple[Topic, ...] = (
    # market data (seeds 000 and 003)
    Topic("stock-trades"),
    Topic("stock-info"),
    Topic("stock-trades-dlq", partitions=1),
    # user activity (seed 001)
    Topic("user_activity"),
    Topic("enriched_activity"),
    # order-payment matching (seed 002)
    Topic("orders"),
    Topic("payments"),
)
