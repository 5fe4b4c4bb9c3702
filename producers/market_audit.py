"""The market pipeline's chaos audit (lakehouse/audit.py): its live producer with duplicates,
late and malformed records, the sentinel that closes event time, and the reconciliation of
its ten sinks.

The producer's stream is deterministic per seed, so its report's message count regenerates
which trade ids it sent on time, late and twice. Each sink's expected content is a multiset
of keys. Late trades are stamped behind the watermark, but whether Spark accepts one depends
on where the batches were cut, so silver expects each late trade at most once: the ones it
holds, and the report counts the others (quarantined, or dropped by the watermark).
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any

import pandas as pd

from lakehouse.audit import Lake, once, reconcile, send_record, total
from lakehouse.pipelines.market import (
    LIVE_BARS,
    LIVE_HOURS,
    REFERENCE_TOPIC,
    TRADES_ENRICHED,
    TRADES_TOPIC,
)

if TYPE_CHECKING:
    from lakehouse.layout import Layout
    from lakehouse.settings import Settings

REFUSED_COPY = "refused_copy"
COPY_REASONS = ("duplicate_trade_id", "late_trade")
SENTINEL = "ZZZZZ"  # a reference far ahead in event time: the watermark passes every trade
BARS = ["symbol", "minute", "trade_count"]


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


def reconcile_market(sent: Sent, lake: dict[str, Any]) -> dict:
    """Every sink of the market pipeline against what was sent. `lake` holds the tables
    read back (Delta and Postgres) and the messages each topic holds."""
    silver = lake["trades_enriched"]
    silver_ids = Counter(silver["trade_id"])
    late_accepted = [t for t in silver_ids if t in sent.late]
    rejected = lake["quarantine_trades_enrichment"]
    on_time_rejected = rejected[rejected["trade_id"].isin(sent.on_time.keys())]
    # A repeated copy is refused as a duplicate when its original is still held, or as late
    # once the original left (it carries the original's event time), or Spark drops it
    # behind the watermark before the enrichment sees it (counted, not kept): each copy is
    # refused at most once, and nothing else of an on-time trade is.
    refused = Counter(
        (t, REFUSED_COPY if reason in COPY_REASONS else reason)
        for t, reason in zip(on_time_rejected["trade_id"], on_time_rejected["reason"], strict=True)
    )
    refusable = Counter({(t, REFUSED_COPY): n for t, n in sent.repeats.items()})
    late_rejected = rejected[rejected["trade_id"].isin(sent.late.keys())]
    references = sent.references + Counter({SENTINEL: 1})
    sinks = {
        "kafka.trades": reconcile(
            Counter(messages=sent.trade_messages), Counter(messages=lake["kafka.trades"])
        ),
        "kafka.references": reconcile(
            Counter(messages=total(references)), Counter(messages=lake["kafka.references"])
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
        "delta.quarantine_trades_enrichment": reconcile(
            refusable & refused, refused, produced=total(refusable)
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
    quarantined_copies = total(refusable & refused)
    late["repeated_copies"] = {
        "sent": total(refusable),
        "quarantined": quarantined_copies,
        "dropped_by_watermark": total(refusable) - quarantined_copies,
    }
    late["references_quarantined"] = int((rejected["reason"] == "late_reference").sum())
    problems = []
    if late["dropped_by_watermark"] < 0:
        problems.append("silver and its quarantine hold more late copies than were sent")
    return {"sinks": sinks, "late_trades": late, "problems": problems}


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


@dataclass(frozen=True)
class MarketAudit:
    symbols: int = 20
    reference_every: int = 50
    duplicate_fraction: float = 0.02
    late_fraction: float = 0.02
    malformed_fraction: float = 0.02

    def simulator(self, seed: int) -> dict:
        """The MarketSimulator options of the run's producer."""
        return {
            "symbols": self.symbols,
            "seed": seed,
            "reference_every": self.reference_every,
            "late_fraction": self.late_fraction,
            "duplicate_fraction": self.duplicate_fraction,
            "malformed_fraction": self.malformed_fraction,
        }

    def sent(self, produced: dict) -> Sent:
        return self._regenerated(produced["seed"], produced["sent"]["total"])

    @functools.lru_cache(maxsize=2)  # noqa: B019 (one audit per process; polled while draining)
    def _regenerated(self, seed: int, messages: int) -> Sent:
        return regenerate(self.simulator(seed), messages)

    def producer_command(
        self, settings: Settings, layout: Layout, rate: float, seed: int
    ) -> list[str]:
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in self.simulator(seed).items()]
        return [
            *(sys.executable, "-m", "producers.market", f"--rate={rate}"),
            f"--trades-topic={layout.topic(TRADES_TOPIC)}",
            f"--reference-topic={layout.topic(REFERENCE_TOPIC)}",
            *flags,
        ]

    def open_event_time(self, settings: Settings, layout: Layout) -> bool:
        return False  # silver expects each late trade at most once, whichever batch took it

    def close_event_time(self, settings: Settings, layout: Layout, produced: dict) -> None:
        value = {
            "schema_version": 1,
            "symbol": SENTINEL,
            "company_name": "Sentinel",
            "sector": "Sentinel",
            "event_timestamp": int(time.time() * 1000) + 24 * 3600 * 1000,
        }
        send_record(settings, layout.topic(REFERENCE_TOPIC), SENTINEL, value)

    def read_back(self, lake: Lake) -> dict[str, Any]:
        return {
            "bronze_trades": lake.delta("bronze_trades", ["trade_id"]),
            "bronze_company_reference": lake.delta("bronze_company_reference", ["symbol"]),
            "quarantine_market": lake.delta("quarantine_market", ["reason"]),
            "trades_enriched": lake.delta(TRADES_ENRICHED, ["trade_id", "symbol", "event_time"]),
            "quarantine_trades_enrichment": with_trade_ids(
                lake.delta("quarantine_trades_enrichment", ["reason", "raw_value"])
            ),
            "serving.trades_enriched": lake.postgres("trades_enriched", ["trade_id"]),
            "serving.trades_ohlcv_1m": lake.postgres("trades_ohlcv_1m", BARS),
            "serving.trades_live_1m": lake.postgres(LIVE_BARS, BARS),
            "live_hours": LIVE_HOURS,
            "kafka.trades": len(lake.kafka_values(TRADES_TOPIC)),
            "kafka.references": len(lake.kafka_values(REFERENCE_TOPIC)),
        }

    def settled(self, produced: dict, found: dict[str, Any]) -> bool:
        """Silver holds every trade sent on time."""
        on_time = self.sent(produced).on_time
        return int(found["trades_enriched"]["trade_id"].isin(on_time.keys()).sum()) >= len(on_time)

    def reconcile(self, produced: dict, found: dict[str, Any]) -> dict:
        return reconcile_market(self.sent(produced), found)


AUDIT = MarketAudit()
