"""The orders pipeline's chaos audit (lakehouse/audit.py says what the chaos run asks of it).

One live producer process sends both topics (orders and payments) with late events,
duplicates and malformed records. Its stream is deterministic per seed, options and planned
tick (1/--rate s live), independently of the clock, so the report's message count
regenerates every message's kind, topic, event id and quarantine reason (`regenerate`).
- A duplicate repeats one of the last 20 on-time messages exactly (same event id, same
  event time): bronze keeps each on-time event id once.
- A late event is an order's next event with a fresh event id, stamped --late-by-s (an hour)
  behind the clock: bronze drops it, and the order never gets that event. Bronze's first
  micro-batch runs before any watermark (0 in its offset log) and would keep the late
  events it reads, so the run sends a primer order at the current time first and starts
  the producer once bronze has read it.
- A malformed record is quarantined with the reason the simulator gives it.
The matching sinks are checked against the oracle (oracle.py) applied to the rows bronze
holds: event times come from the wall clock, and late events cost orders their events, so
only bronze knows what matching saw. A sentinel order far ahead in event time moves the
watermark past every other order's deadline.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from typing import TYPE_CHECKING, Any

import pandas as pd

from lakehouse.audit import Lake, once, reconcile, send_record, total
from lakehouse.pipelines.orders import (
    CHANGES_TABLE,
    EVENT,
    EVENTS_TABLE,
    MONGO_COLLECTION,
    ORDER_CREATED,
    ORDERS_TOPIC,
    OUTCOMES_TABLE,
    PAYMENTS_TOPIC,
    QUARANTINE_TABLE,
)
from lakehouse.pipelines.orders.oracle import WATERMARK_MS, states_of

if TYPE_CHECKING:
    from lakehouse.layout import Layout
    from lakehouse.settings import Settings

SERVING_TABLE = "order_status"
SENTINEL_ORDER = "o-chaos-sentinel"
SENTINEL_EVENT = "chaos-sentinel"
PRIMER_ORDER = "o-chaos-primer"
PRIMER_EVENT = "chaos-primer"
MARKER_EVENTS = (PRIMER_EVENT, SENTINEL_EVENT)
DAY_MS = 24 * 3600 * 1000
EVENT_COLUMNS = ["event_id", "order_id", "event_type", "amount", "event_time"]
# What every sink of an order's state keeps, as the oracle's key (version aside: how many
# changes an order went through depends on the batching).
STATE_COLUMNS = ["order_id", "status", "order_amount", "paid_amount", "order_time", "payment_time"]
# The sinks holding each order's latest state.
STATE_SINKS = ("delta.order_outcomes", "postgres.order_status", "mongo.orders")

StateKey = tuple  # (order id, status, order cents, paid cents, order ms, payment ms)


@dataclass(frozen=True)
class Feed:
    """The live producer's options: its command line and the regeneration of what it sent
    both come from here, so they cannot drift apart."""

    seed: int
    tick_ms: float  # the producer's planned time per message (its report says it)
    late: float = 0.02
    duplicates: float = 0.02
    malformed: float = 0.02
    late_by_s: int = 3600  # an hour: behind bronze's 2-minute watermark whatever the outages

    def cli_options(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "late": self.late,
            "late_by_s": self.late_by_s,
            "duplicates": self.duplicates,
            "malformed": self.malformed,
        }

    def command(self, namespace: str, rate: float) -> list[str]:
        """Live (wall clock, no --start): runs until SIGTERM, then prints its report."""
        flags = [f"--{name.replace('_', '-')}={v}" for name, v in self.cli_options().items()]
        return [
            sys.executable,
            "-m",
            "producers.orders",
            f"--rate={rate}",
            f"--namespace={namespace}",
            *flags,
        ]

    def simulator(self) -> dict[str, Any]:
        """The OrdersSimulator fields the command line gives."""
        options = self.cli_options()
        options["late_by_ms"] = options.pop("late_by_s") * 1000
        return options


@dataclass(frozen=True)
class Sent:
    """What the producer sent, by kind (keys: what the sinks keep of each message)."""

    by_topic: Counter  # base topic -> messages of every kind
    on_time: Counter  # valid on-time event id -> 1
    repeats: Counter  # on-time event id -> its repeated copies
    late: Counter  # late event id -> 1 (a late event has an id of its own)
    malformed: Counter  # quarantine reason -> messages


@lru_cache(maxsize=4)  # settled() is polled every few seconds with the same report
def regenerate(feed: Feed, messages: int) -> Sent:
    """The first `messages` messages of the producer's stream (the simulated clock's values
    do not matter: no draw depends on them)."""
    from producers.activity import SimulatedClock
    from producers.orders import OrdersSimulator

    sent = Sent(Counter(), Counter(), Counter(), Counter(), Counter())
    stream = OrdersSimulator(**feed.simulator()).messages(SimulatedClock(0, 1), feed.tick_ms)
    for message in islice(stream, messages):
        sent.by_topic[message.topic] += 1
        if message.kind == "malformed":
            sent.malformed[message.reason] += 1
            continue
        event_id = json.loads(message.value)["event_id"]
        {"events": sent.on_time, "duplicates": sent.repeats, "late": sent.late}[message.kind][
            event_id
        ] += 1
    return sent


def marker_record(order_id: str, event_id: str, event_ms: int) -> dict:
    """A valid order nobody pays, only there for its event time: the primer (now, before
    the producer starts) or the sentinel (a day ahead, after it stopped, so the watermark
    passes every other order's deadline; it stays awaiting_payment, its own deadline ahead)."""
    return {
        "schema_version": EVENT.latest.version,
        "event_id": event_id,
        "order_id": order_id,
        "customer_id": f"c-{order_id}",
        "event_type": ORDER_CREATED,
        "amount": 1.0,
        "event_timestamp": event_ms,
    }


def sentinel_record(event_ms: int) -> dict:
    return marker_record(SENTINEL_ORDER, SENTINEL_EVENT, event_ms)


# ---- reading the sinks' rows as keys --------------------------------------------------


def epoch_ms(values: pd.Series) -> list[int | None]:
    """Timestamps of any unit, naive (UTC) or zoned, as epoch ms; None for none."""
    times = pd.to_datetime(values, utc=True)
    ms = (times - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    return [None if pd.isna(m) else int(m) for m in ms]


def to_cents(amount: Any) -> int | None:
    """An amount (float, Decimal from Postgres, None/NaN for none) in whole cents."""
    return None if amount is None or pd.isna(amount) else round(float(amount) * 100)


def state_keys(rows: pd.DataFrame) -> list[StateKey]:
    """One key per row of a frame with STATE_COLUMNS."""
    return list(
        zip(
            rows["order_id"],
            rows["status"],
            map(to_cents, rows["order_amount"]),
            map(to_cents, rows["paid_amount"]),
            epoch_ms(rows["order_time"]),
            epoch_ms(rows["payment_time"]),
            strict=True,
        )
    )


def mongo_frame(documents: list[dict]) -> pd.DataFrame:
    """The collection's documents (keyed by order id, nulls left out) in STATE_COLUMNS."""
    rows = pd.DataFrame(documents).rename(columns={"_id": "order_id"})
    return rows.reindex(columns=STATE_COLUMNS).astype(object)


def expected_states(events: pd.DataFrame) -> dict[str, StateKey]:
    """order id -> its final state key, by the oracle over the rows bronze holds, with the
    watermark matching reaches from them (the sentinel's, once it is there)."""
    if events.empty:
        return {}
    records = pd.DataFrame(
        {
            "order_id": events["order_id"],
            "event_type": events["event_type"],
            "amount": events["amount"].astype("float64"),
            "event_timestamp": epoch_ms(events["event_time"]),
        }
    ).to_dict("records")
    watermark_ms = max(r["event_timestamp"] for r in records) - WATERMARK_MS
    return {
        order_id: (
            order_id,
            state["status"],
            to_cents(state["order_amount"]),
            to_cents(state["paid_amount"]),
            state["order_time_ms"],
            state["payment_time_ms"],
        )
        for order_id, state in states_of(records, watermark_ms=watermark_ms).items()
    }


def history_keys(changes: pd.DataFrame, want: dict[str, StateKey]) -> tuple[Counter, Counter]:
    """(expected, found) of the history. Which intermediate changes an order went through
    depends on the batching (an order and its payment in one batch give one change, in two
    batches two), so only what does not is reconciled: each (order, version) once, versions
    1..n without a gap, and each order's last change its final state."""
    versions = zip(changes["order_id"], changes["version"], strict=True)
    found = Counter(("change", o, int(v)) for o, v in versions)
    last = changes.sort_values("version").drop_duplicates("order_id", keep="last")
    found.update(("final", *key) for key in state_keys(last))
    top = dict(zip(last["order_id"], last["version"].astype(int), strict=True))
    expected = once(("final", *key) for key in want.values())
    expected.update(("change", o, v) for o in want for v in range(1, top.get(o, 0) + 1))
    return expected, found


# ---- the audit ------------------------------------------------------------------------


class OrdersAudit:
    """`ChaosAudit` of the orders pipeline."""

    def producer_command(
        self, settings: Settings, layout: Layout, rate: float, seed: int
    ) -> list[str]:
        return Feed(seed=seed, tick_ms=1000 / rate).command(layout.namespace, rate)

    def sent(self, produced: dict) -> Sent:
        # Live, the producer plans its follow-ups in ticks of 1/rate s: with the seed, the
        # tick fixes which message comes when.
        return regenerate(Feed(produced["seed"], produced["tick_ms"]), produced["sent"])

    def open_event_time(self, settings: Settings, layout: Layout) -> bool:
        record = marker_record(PRIMER_ORDER, PRIMER_EVENT, int(time.time() * 1000))
        send_record(settings, layout.topic(ORDERS_TOPIC), PRIMER_ORDER, record)
        return True

    def close_event_time(self, settings: Settings, layout: Layout, produced: dict) -> None:
        record = sentinel_record(int(time.time() * 1000) + DAY_MS)
        send_record(settings, layout.topic(ORDERS_TOPIC), SENTINEL_ORDER, record)

    def read_back(self, lake: Lake) -> dict[str, Any]:
        """Keyed by sink name; Kafka topics as their message counts."""
        return {
            "kafka.orders": len(lake.kafka_values(ORDERS_TOPIC)),
            "kafka.payments": len(lake.kafka_values(PAYMENTS_TOPIC)),
            "delta.order_events": lake.delta(EVENTS_TABLE, EVENT_COLUMNS),
            "delta.quarantine_orders": lake.delta(QUARANTINE_TABLE, ["reason"]),
            "delta.order_state_changes": lake.delta(CHANGES_TABLE, [*STATE_COLUMNS, "version"]),
            "delta.order_outcomes": lake.delta(OUTCOMES_TABLE, STATE_COLUMNS),
            "postgres.order_status": lake.postgres(SERVING_TABLE, STATE_COLUMNS),
            "mongo.orders": mongo_frame(lake.mongo(MONGO_COLLECTION)),
        }

    def settled(self, produced: dict, found: dict[str, Any]) -> bool:
        """Bronze holds every on-time event and the sentinel, and every sink of the latest
        state holds each order's final state (matching may still be catching up)."""
        events = found["delta.order_events"]
        ids = set(events["event_id"])
        if not set(MARKER_EVENTS) <= ids or not self.sent(produced).on_time.keys() <= ids:
            return False
        want = Counter(expected_states(events).values())
        return all(not want - Counter(state_keys(found[sink])) for sink in STATE_SINKS)

    def reconcile(self, produced: dict, found: dict[str, Any]) -> dict:
        sent = self.sent(produced)
        events = found["delta.order_events"]
        in_bronze = Counter(events["event_id"])
        late_accepted = [i for i in in_bronze if i in sent.late]
        want = expected_states(events)
        history = history_keys(found["delta.order_state_changes"], want)
        sinks = {
            "kafka.orders": reconcile(
                Counter(messages=sent.by_topic[ORDERS_TOPIC] + len(MARKER_EVENTS)),
                Counter(messages=found["kafka.orders"]),
            ),
            "kafka.payments": reconcile(
                Counter(messages=sent.by_topic[PAYMENTS_TOPIC]),
                Counter(messages=found["kafka.payments"]),
            ),
            # Each on-time event once (its duplicates dropped); a late one is not expected.
            "delta.order_events": reconcile(
                once(sent.on_time) + once(MARKER_EVENTS),
                in_bronze,
                produced=total(sent.on_time + sent.repeats + sent.late) + len(MARKER_EVENTS),
            ),
            "delta.quarantine_orders": reconcile(
                sent.malformed, Counter(found["delta.quarantine_orders"]["reason"])
            ),
            "delta.order_state_changes": reconcile(*history, produced=len(want)),
        }
        for sink in STATE_SINKS:
            sinks[sink] = reconcile(
                once(want.values()), Counter(state_keys(found[sink])), produced=len(want)
            )
        kept = sum(in_bronze[i] - 1 for i in sent.repeats if in_bronze[i] > 1)
        return {
            "sinks": sinks,
            "late": {
                "sent": total(sent.late),
                "accepted": len(late_accepted),  # also duplicated on delta.order_events
                "dropped": total(sent.late) - len(late_accepted),
            },
            "duplicates": {"sent": total(sent.repeats), "dropped": total(sent.repeats) - kept},
        }


AUDIT = OrdersAudit()
