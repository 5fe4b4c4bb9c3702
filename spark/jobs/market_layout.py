"""Where the market pipeline reads and writes: topics, Delta tables, checkpoints.

The default layout is the platform's (registry topics, tables under the lake root). Tests
and replays use an isolated layout: suffixed topics and a separate lake prefix, so runs
never see each other's data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lakehouse.registry import REFERENCE_TOPIC, TABLES, TRADES_TOPIC
from lakehouse.settings import Settings


@dataclass(frozen=True)
class MarketLayout:
    trades_topic: str
    reference_topic: str
    lake_root: str
    checkpoint_root: Path

    def table(self, name: str) -> str:
        return f"{self.lake_root}/{TABLES[name].path}"

    def checkpoint(self, query: str) -> str:
        return str(self.checkpoint_root / query)

    @classmethod
    def default(cls, settings: Settings) -> MarketLayout:
        return cls(TRADES_TOPIC, REFERENCE_TOPIC, settings.lake_uri, settings.checkpoints_dir)

    @classmethod
    def isolated(cls, settings: Settings, namespace: str) -> MarketLayout:
        return cls(
            f"{TRADES_TOPIC}-{namespace}",
            f"{REFERENCE_TOPIC}-{namespace}",
            f"{settings.lake_uri}/isolated/{namespace}",
            settings.checkpoints_dir / "isolated" / namespace,
        )
