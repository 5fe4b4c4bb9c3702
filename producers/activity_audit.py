"""The web activity pipeline's chaos audit (lakehouse/audit.py): its live producer with
duplicates, late and malformed records, the sentinel that closes event time, and the
reconciliation of its seven sinks; plus the oracle of its windows and sessions, which the
end-to-end test (tests/activity.py) uses too.

The producer's stream is deterministic per seed and options, so its report's message count
regenerates which event ids it sent on time, late and twice, and which malformed records.
Bronze and the Kafka topics are held to that; the three Postgres tables to the oracle
computed from the events bronze holds (event times come from the wall clock, so only bronze
knows them), with the final watermark at bronze's latest event time minus 2 minutes.

Late events are stamped an hour behind the clock: far behind bronze's watermark in every
batch but the first, whose watermark is still 0 (Spark has seen no event yet). So the run
sends a primer at the current time first and starts the producer once bronze has read it:
every late event must then be dropped.
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

from lakehouse.audit import Lake, once, reconcile, send_record
from lakehouse.pipelines.activity import (
    ACTIVITY_TOPIC,
    ENRICHED_TOPIC,
    EVENT,
    EVENTS_TABLE,
    QUARANTINE_TABLE,
)

if TYPE_CHECKING:
    from lakehouse.layout import Layout
    from lakehouse.settings import Settings

WATERMARK_MS = 120_000  # the pipeline's watermark (DEFAULT_PARAMS)
TIMEOUT_MS = 900_000  # and its session timeout
PAGE_VIEW_WINDOW_MS = 60_000
ACTIVE_USERS_WINDOW_MS = 300_000  # sliding by one minute
# One valid page view a day ahead of the clock: the watermark passes every window and
# session timeout of what was sent. Its own page, so the page views sink shows it was read.
SENTINEL = {
    "event_id": "sentinel-chaos",
    "user_id": "sentinel",
    "session_id": "sentinel",
    "event_type": "page_view",
    "page": "/sentinel",
}
SENTINEL_AHEAD_MS = 24 * 3600 * 1000
# One valid page view at the current time, before the producer starts (open_event_time).
PRIMER = {
    "event_id": "primer-chaos",
    "user_id": "primer",
    "session_id": "primer",
    "event_type": "page_view",
    "page": "/primer",
}
MARKERS = (PRIMER["event_id"], SENTINEL["event_id"])
EVENT_COLUMNS = ["event_id", "user_id", "session_id", "event_type", "page"]
SESSION_COLUMNS = [
    "user_id",
    "session_id",
    "session_start_ms",
    "session_end_ms",
    "duration_s",
    "event_count",
    "pages_viewed",
    "end_reason",
]


def epoch_ms(column: pd.Series) -> pd.Series:
    """Epoch milliseconds of zoned or naive-UTC timestamps of any unit."""
    times = pd.to_datetime(column, utc=True)
    return ((times - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)).astype("int64")


# ---- the oracle of the derived sinks (pure) -------------------------------------------


@dataclass
class EventOracle:
    """What the window and session sinks must hold, computed in pandas from the accepted
    events (EVENT_COLUMNS and event_time_ms), each once."""

    accepted: pd.DataFrame

    @property
    def final_watermark_ms(self) -> int:
        return int(self.accepted["event_time_ms"].max()) - WATERMARK_MS

    def page_views(self) -> pd.DataFrame:
        views = self.accepted[self.accepted["event_type"] == "page_view"]
        minute = views["event_time_ms"] // 60_000 * 60_000
        counted = views.assign(window_start=minute).groupby(["window_start", "page"]).size()
        return counted.rename("views").reset_index().sort_values(["window_start", "page"])

    def active_users(self) -> pd.DataFrame:
        minute = self.accepted["event_time_ms"] // 60_000 * 60_000
        windows = pd.concat(
            self.accepted.assign(window_start=minute - k * 60_000)[["window_start", "user_id"]]
            for k in range(ACTIVE_USERS_WINDOW_MS // 60_000)
        )
        counted = windows.groupby("window_start")["user_id"].nunique()
        return counted.rename("active_users").reset_index().sort_values("window_start")

    def sessions(self) -> pd.DataFrame:
        """The sessions closed by the final watermark, as user_sessions must hold them."""
        events = self.accepted.assign(viewed=self.accepted["event_type"] == "page_view")
        ends = events[events["event_type"] == "session_end"]
        grouped = events.groupby(["user_id", "session_id"])
        frame = pd.DataFrame(
            {
                "session_start_ms": grouped["event_time_ms"].min(),
                "last_ms": grouped["event_time_ms"].max(),
                "event_count": grouped.size(),
                # A sum, not a per-group lambda: polled while the run drains.
                "pages_viewed": grouped["viewed"].sum().astype("int64"),
            }
        ).join(ends.groupby(["user_id", "session_id"])["event_time_ms"].max().rename("end_ms"))
        ended = frame["end_ms"].notna()
        threshold = frame["last_ms"].where(~ended, frame[["end_ms", "last_ms"]].max(axis=1))
        threshold = threshold.where(ended, frame["last_ms"] + TIMEOUT_MS)
        closed = frame[self.final_watermark_ms > threshold].copy()
        closed["end_reason"] = closed["end_ms"].notna().map({True: "end_event", False: "timeout"})
        closed["session_end_ms"] = closed["end_ms"].fillna(closed["last_ms"]).astype("int64")
        closed["duration_s"] = (closed["session_end_ms"] - closed["session_start_ms"]) / 1000.0
        return (
            closed.reset_index()[SESSION_COLUMNS]
            .sort_values(["user_id", "session_id", "session_start_ms"])
            .reset_index(drop=True)
        )


# ---- what was sent (pure) -------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """What the producer sent, by kind."""

    messages: int = 0
    on_time: frozenset[str] = frozenset()  # valid event ids sent on time (each at least once)
    late: frozenset[str] = frozenset()  # late event ids (each a fresh id, sent once)
    repeats: int = 0  # copies of an on-time event sent again (its id repeated)
    malformed: Counter = field(default_factory=Counter)  # quarantine reason -> messages


def regenerate(simulator: dict, messages: int) -> Sent:
    """The first `messages` messages of the producer's stream for these ActivitySimulator
    options (the ids and kinds do not depend on the clock, only on the seed and options)."""
    from producers.activity import ActivitySimulator, SimulatedClock

    on_time: set[str] = set()
    late: set[str] = set()
    repeats = 0
    malformed: Counter = Counter()
    stream = ActivitySimulator(**simulator).messages(SimulatedClock(0))
    for message in islice(stream, messages):
        if message.kind == "malformed":
            malformed[message.reason] += 1
            continue
        event_id = json.loads(message.value)["event_id"]
        if message.kind == "late":
            late.add(event_id)
        elif message.kind == "duplicates":  # a copy of a recent on-time event
            repeats += 1
        else:
            on_time.add(event_id)
    return Sent(messages, frozenset(on_time), frozenset(late), repeats, malformed)


# ---- the reconciliation (pure) --------------------------------------------------------


def rows_of(frame: pd.DataFrame, *columns: str) -> Counter:
    """The rows of these columns as tuples of plain Python values."""
    return Counter(zip(*(frame[c].tolist() for c in columns), strict=True))


def session_rows(sessions: pd.DataFrame) -> Counter:
    """Each session as the whole row (durations to the millisecond, as floats compare)."""
    return rows_of(
        sessions.assign(duration_s=sessions["duration_s"].astype("float64").round(3)),
        *SESSION_COLUMNS,
    )


def expected_rows(events: pd.DataFrame) -> dict[str, Counter]:
    """The rows of each Postgres table (timestamps in epoch ms) the oracle computes from the
    events bronze holds: a whole row is the key, so a wrong value is one lost, one extra."""
    if events.empty:  # nothing reached bronze: nothing to derive
        return {name: Counter() for name in ("page_view_counts", "active_users", "user_sessions")}
    oracle = EventOracle(events)
    views = oracle.page_views()
    users = oracle.active_users()
    return {
        "page_view_counts": rows_of(
            views.assign(window_end=views["window_start"] + PAGE_VIEW_WINDOW_MS),
            *("window_start", "window_end", "page", "views"),
        ),
        "active_users": rows_of(
            users.assign(window_end=users["window_start"] + ACTIVE_USERS_WINDOW_MS),
            *("window_start", "window_end", "active_users"),
        ),
        "user_sessions": session_rows(oracle.sessions()),
    }


def reconcile_activity(sent: Sent, found: dict[str, Any]) -> dict:
    """Every sink of the activity pipeline: bronze and the topics against what was sent, the
    Postgres tables against the oracle of what bronze holds."""
    events = found["events"]
    bronze_ids = Counter(events["event_id"])
    accepted = once(sent.on_time) + once(MARKERS)  # each on-time event once, no late one
    derived = expected_rows(events)
    views, users = found["page_view_counts"], found["active_users"]
    sinks = {
        "kafka.user_activity": reconcile(
            Counter(messages=sent.messages + len(MARKERS)),
            Counter(messages=found["kafka.user_activity"]),
        ),
        "delta.activity_events": reconcile(
            accepted, bronze_ids, produced=len(sent.on_time) + len(sent.late) + len(MARKERS)
        ),
        "delta.quarantine_activity": reconcile(
            sent.malformed, Counter(found["quarantine"]["reason"])
        ),
        # One Kafka transaction per micro-batch: read_committed sees each accepted event once.
        "kafka.enriched_activity": reconcile(accepted, Counter(found["enriched_ids"])),
        "postgres.page_view_counts": reconcile(
            derived["page_view_counts"],
            rows_of(views, "window_start_ms", "window_end_ms", "page", "views"),
        ),
        "postgres.active_users": reconcile(
            derived["active_users"],
            rows_of(users, "window_start_ms", "window_end_ms", "active_users"),
        ),
        "postgres.user_sessions": reconcile(
            derived["user_sessions"], session_rows(found["user_sessions"])
        ),
    }
    late_found = set(bronze_ids) & sent.late
    extra_copies = sum(n - 1 for i, n in bronze_ids.items() if i in sent.on_time and n > 1)
    return {
        "sinks": sinks,
        "late": {
            "sent": len(sent.late),
            # Neither in bronze nor anywhere else (a valid event is never quarantined).
            "dropped": len(sent.late - late_found),
        },
        "duplicates_sent": sent.repeats,
        "duplicates_dropped": sent.repeats - extra_copies,
    }


# ---- the audit ------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivityAudit:
    """The live producer's options besides the seed and rate: a modest pool of users, so
    sessions and windows hold several events each."""

    users: int = 200
    concurrent: int = 20
    duplicate_fraction: float = 0.02
    late_fraction: float = 0.02
    malformed_fraction: float = 0.02
    # An hour behind: bronze's 2-minute watermark drops each one, whatever the batching and
    # the outages (minutes at most), once the primer has set it (the module's docstring).
    late_by_s: int = 3600

    def options(self, seed: int) -> dict:
        """The producer's command-line options (--late-by-s in seconds)."""
        return {
            "users": self.users,
            "concurrent": self.concurrent,
            "duplicate_fraction": self.duplicate_fraction,
            "late_fraction": self.late_fraction,
            "malformed_fraction": self.malformed_fraction,
            "late_by_s": self.late_by_s,
            "seed": seed,
        }

    def simulator(self, seed: int) -> dict:
        """The same options as ActivitySimulator takes them."""
        options = self.options(seed)
        late_by_s = options.pop("late_by_s")
        return {**options, "late_by_ms": late_by_s * 1000}

    def sent(self, produced: dict) -> Sent:
        return self._regenerated(produced["seed"], produced["sent"])

    @functools.lru_cache(maxsize=2)  # noqa: B019 (one audit per process; polled while draining)
    def _regenerated(self, seed: int, messages: int) -> Sent:
        return regenerate(self.simulator(seed), messages)

    def producer_command(
        self, settings: Settings, layout: Layout, rate: float, seed: int
    ) -> list[str]:
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in self.options(seed).items()]
        return [
            *(sys.executable, "-m", "producers.activity", f"--rate={rate}"),
            f"--namespace={layout.namespace}",
            *flags,
        ]

    def open_event_time(self, settings: Settings, layout: Layout) -> bool:
        self._send(settings, layout, PRIMER, int(time.time() * 1000))
        return True

    def close_event_time(self, settings: Settings, layout: Layout, produced: dict) -> None:
        self._send(settings, layout, SENTINEL, int(time.time() * 1000) + SENTINEL_AHEAD_MS)

    def _send(self, settings: Settings, layout: Layout, marker: dict, at_ms: int) -> None:
        value = {"schema_version": EVENT.latest.version, **marker, "event_timestamp": at_ms}
        send_record(settings, layout.topic(ACTIVITY_TOPIC), marker["user_id"], value)

    def read_back(self, lake: Lake) -> dict[str, Any]:
        events = lake.delta(EVENTS_TABLE, [*EVENT_COLUMNS, "event_time"])
        events["event_time_ms"] = epoch_ms(events.pop("event_time"))
        views = lake.postgres("page_view_counts", ["window_start", "window_end", "page", "views"])
        users = lake.postgres("active_users", ["window_start", "window_end", "active_users"])
        for frame in (views, users):
            frame["window_start_ms"] = epoch_ms(frame.pop("window_start"))
            frame["window_end_ms"] = epoch_ms(frame.pop("window_end"))
        values = ["duration_s", "event_count", "pages_viewed", "end_reason"]
        sessions = lake.postgres(
            "user_sessions", ["user_id", "session_id", "session_start", "session_end", *values]
        )
        sessions["session_start_ms"] = epoch_ms(sessions.pop("session_start"))
        sessions["session_end_ms"] = epoch_ms(sessions.pop("session_end"))
        return {
            "events": events,
            "quarantine": lake.delta(QUARANTINE_TABLE, ["reason"]),
            "kafka.user_activity": len(lake.kafka_values(ACTIVITY_TOPIC)),
            "enriched_ids": [json.loads(v)["event_id"] for v in lake.kafka_values(ENRICHED_TOPIC)],
            "page_view_counts": views,
            "active_users": users,
            "user_sessions": sessions,
        }

    def settled(self, produced: dict, found: dict[str, Any]) -> bool:
        """Bronze holds every on-time event and the sentinel, the window sinks hold the
        sentinel's windows (they read it), and user_sessions every session the watermark
        closed (the last to catch up: it needs one more batch to move its watermark)."""
        events = found["events"]
        want = self.sent(produced).on_time | set(MARKERS)
        if not want <= set(events["event_id"]):
            return False
        ahead = int(events["event_time_ms"].max()) // 60_000 * 60_000  # the sentinel's minute
        views, users = found["page_view_counts"], found["active_users"]
        if not (
            ((views["window_start_ms"] == ahead) & (views["page"] == SENTINEL["page"])).any()
            and (users["window_start_ms"] == ahead).any()
        ):
            return False
        closed = EventOracle(events).sessions()
        keys = set(zip(closed["user_id"], closed["session_id"], strict=True))
        sessions = found["user_sessions"]
        return keys <= set(zip(sessions["user_id"], sessions["session_id"], strict=True))

    def reconcile(self, produced: dict, found: dict[str, Any]) -> dict:
        return reconcile_activity(self.sent(produced), found)


AUDIT = ActivityAudit()
