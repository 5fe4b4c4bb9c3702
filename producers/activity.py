"""Web activity simulator: user sessions (page views, clicks, add-to-cart) to Kafka.

Event generation is pure (same seed, options and simulated start -> byte-identical
messages); sending is the I/O edge. Messages are JSON with a `schema_version` (the contract
in lakehouse/pipelines/activity), keyed by user id so one user's events keep their order
within a partition.

A pool of users browses a small site: up to `--concurrent` sessions are open at once; each
step one open session sends its next event (session_start, a few page views, clicks and
add-to-carts, then session_end), and a share of sessions is abandoned (no session_end).
On request it mixes in late events (a session's next event stamped `--late-by-s` behind the
clock), exact duplicates and malformed records, and at the end prints one JSON line saying
how many of each it sent, so tests can reconcile every count.

The clock is the wall clock (live, paced at `--rate`), or simulated with `--start`: the
first event is stamped `--start`, each message advances the clock by `--step-ms`.

    python -m producers.activity --verbose | grep LATE
    python -m producers.activity --start 2026-01-01T00:00:00Z --count 100000 --seed 7
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import typer

from lakehouse.contracts import MAX_EVENT_MS, MIN_EVENT_MS, UNPARSEABLE, Contract
from lakehouse.pipelines.activity import ACTIVITY_TOPIC, EVENT
from producers.market import keep_sending, missing_topics, open_producer
from producers.seeds import SEED_HELP, run_seed

PRODUCTS = 40
SECTIONS = ("/", "/search", "/products", "/deals", "/cart", "/checkout", "/account", "/help")
ENTRY_PAGES = ("/", "/", "/search", "/products", "/deals")
SITE_MAP = (*SECTIONS, *(f"/products/{n}" for n in range(1, PRODUCTS + 1)))
# Malformed variants and the quarantine reason the bronze contract gives each.
MALFORMED_REASONS = {
    "unparseable": UNPARSEABLE,  # not JSON at all
    "mistyped": UNPARSEABLE,  # event_timestamp as a string
    "missing_user_id": "missing_user_id",
    "unknown_event_type": "unknown_event_type",
    "page_format": "page_format",
    "unknown_schema_version": "unknown_schema_version",
}
KINDS = ("events", "late", "duplicates", "malformed")
RECENT = 20  # a duplicate repeats one of the last this many on-time events


@dataclass(frozen=True)
class Message:
    kind: str  # events (valid, on time) | late | duplicates | malformed
    key: bytes
    value: bytes
    reason: str | None = None  # for malformed: the quarantine reason it should get
    event_time_ms: int = 0  # the event_timestamp it carries (the clock for malformed ones)
    clock_ms: int = 0  # the clock when it was generated
    event_type: str | None = None  # of a valid record
    finishes: str | None = None  # "ended" / "abandoned" on the last event of a session


class Clock(Protocol):
    def tick(self) -> int:
        """The time (epoch ms) of the next message; a simulated clock then advances."""
        ...

    @property
    def now(self) -> int: ...


class SimulatedClock:
    """Starts at `start_ms`; every tick returns the time and advances it by `step_ms`, so
    after n messages `now` is start_ms + n * step_ms (the report's clock_end_ms)."""

    def __init__(self, start_ms: int, step_ms: int = 100):
        self.now = start_ms
        self.step_ms = step_ms

    def tick(self) -> int:
        current = self.now
        self.now += self.step_ms
        return current

    def __repr__(self) -> str:
        return f"SimulatedClock(now={self.now}, step_ms={self.step_ms})"


class WallClock:
    """Event time is the wall clock when a message is generated, right before it is sent."""

    def tick(self) -> int:
        return self.now

    @property
    def now(self) -> int:
        return int(time.time() * 1000)


def _json(record: dict) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


def random_uuid(rng: random.Random) -> str:
    """A version-4 UUID drawn from `rng`, so a seed fixes it."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def user_name(index: int, users: int) -> str:
    """0 -> u000000; wider when the pool needs more digits."""
    return f"u{index:0{max(6, len(str(users - 1)))}d}"


def is_product(page: str) -> bool:
    return page.startswith("/products/")


@dataclass
class _Session:
    session_id: str
    user: int
    actions: int  # page views, clicks and add-to-carts between start and end
    abandons: bool  # stops after its last action, without session_end
    page: str = "/"
    sent: int = 0

    @property
    def length(self) -> int:
        return self.actions + (1 if self.abandons else 2)


@dataclass
class ActivitySimulator:
    """One stream of messages: `messages(clock)` may be iterated once per simulator."""

    users: int = 1000
    concurrent: int = 50
    seed: int = 42
    abandon_fraction: float = 0.2
    late_fraction: float = 0.05
    late_by_ms: int = 180_000
    duplicate_fraction: float = 0.0
    malformed_fraction: float = 0.0
    min_actions: int = 2
    max_actions: int = 12
    _rng: random.Random = field(init=False)
    _recent: deque = field(init=False)

    def __post_init__(self) -> None:
        if self.users < 1 or self.concurrent < 1:
            raise ValueError("users and concurrent sessions must be at least 1")
        if not 1 <= self.min_actions <= self.max_actions:
            raise ValueError("a session needs 1 <= min_actions <= max_actions")
        fractions = (
            self.abandon_fraction,
            self.late_fraction,
            self.duplicate_fraction,
            self.malformed_fraction,
        )
        if not all(0.0 <= f <= 1.0 for f in fractions):
            raise ValueError("every fraction must be between 0 and 1")
        if self.late_fraction + self.duplicate_fraction + self.malformed_fraction > 1.0:
            raise ValueError("late, duplicate and malformed fractions add up to more than 1")
        if self.late_by_ms < 0:
            raise ValueError("late_by_ms must not be negative")
        self.concurrent = min(self.concurrent, self.users)
        self._rng = random.Random(self.seed)
        self._recent = deque(maxlen=RECENT)

    # ---- records ----------------------------------------------------------------------

    def _uuid(self) -> str:
        return random_uuid(self._rng)

    def _user(self, index: int) -> str:
        return user_name(index, self.users)

    def record(self, user: str, session_id: str, event_type: str, page: str, event_ms: int):
        return {
            "schema_version": EVENT.latest.version,
            "event_id": self._uuid(),
            "user_id": user,
            "session_id": session_id,
            "event_type": event_type,
            "page": page,
            "event_timestamp": event_ms,
        }

    def malformed(self, now: int) -> Message:
        rng = self._rng
        variant = rng.choice(tuple(MALFORMED_REASONS))
        user = self._user(rng.randrange(self.users))
        record = self.record(
            user, self._uuid(), rng.choice(("page_view", "click")), rng.choice(SITE_MAP), now
        )
        if variant == "unparseable":
            value = _json(record)
            value = value[: len(value) // 2]  # cut inside the object: never valid JSON
        else:
            if variant == "mistyped":
                record["event_timestamp"] = str(now)
            elif variant == "missing_user_id":
                del record["user_id"]
            elif variant == "unknown_event_type":
                record["event_type"] = rng.choice(("purchase", "scroll", "PageView"))
            elif variant == "page_format":
                record["page"] = rng.choice(("products/7", "/Products/7", "/search?q=shoes"))
            elif variant == "unknown_schema_version":
                record["schema_version"] = 99
            value = _json(record)
        return Message(
            "malformed",
            user.encode(),
            value,
            MALFORMED_REASONS[variant],
            event_time_ms=now,
            clock_ms=now,
        )

    # ---- sessions ---------------------------------------------------------------------

    def _new_session(self, idle: list[int]) -> _Session:
        rng = self._rng
        slot = rng.randrange(len(idle))
        user = idle[slot]
        idle[slot] = idle[-1]
        idle.pop()
        return _Session(
            self._uuid(),
            user,
            rng.randint(self.min_actions, self.max_actions),
            rng.random() < self.abandon_fraction,
        )

    def _next_step(self, session: _Session) -> tuple[str, str]:
        """The session's next event type and page; moves the session on."""
        rng = self._rng
        session.sent += 1
        if session.sent == 1:
            session.page = rng.choice(ENTRY_PAGES)
            if session.page == "/products" and rng.random() < 0.5:
                session.page = f"/products/{rng.randint(1, PRODUCTS)}"
            return "session_start", session.page
        if session.sent > session.actions + 1:
            return "session_end", session.page
        draw = rng.random()
        if draw < 0.15 and is_product(session.page):
            return "add_to_cart", session.page
        if draw < 0.45:
            return "click", session.page
        if session.page == "/cart" and rng.random() < 0.5:
            session.page = "/checkout"
        elif rng.random() < 0.5:
            session.page = f"/products/{rng.randint(1, PRODUCTS)}"
        else:
            session.page = rng.choice(SECTIONS)
        return "page_view", session.page

    def messages(self, clock: Clock) -> Iterator[Message]:
        """Messages forever, each stamped by one `clock.tick()`.

        The random draws never depend on the clock's values, so a live feed and a simulated
        one with the same seed and options send the same events (only their times differ)."""
        rng = self._rng
        idle = list(range(self.users))
        active = [self._new_session(idle) for _ in range(self.concurrent)]
        malformed = self.malformed_fraction
        duplicate = malformed + self.duplicate_fraction
        late_below = duplicate + self.late_fraction
        while True:
            now = clock.tick()
            draw = rng.random()
            if draw < malformed:
                yield self.malformed(now)
                continue
            if draw < duplicate and self._recent:
                copy = rng.choice(self._recent)
                yield replace(copy, kind="duplicates", clock_ms=now, finishes=None)
                continue
            late = duplicate <= draw < late_below
            slot = rng.randrange(len(active))
            session = active[slot]
            event_type, page = self._next_step(session)
            event_ms = now - self.late_by_ms if late else now
            user = self._user(session.user)
            record = self.record(user, session.session_id, event_type, page, event_ms)
            finishes = None
            if session.sent == session.length:
                finishes = "abandoned" if session.abandons else "ended"
                idle.append(session.user)
                active[slot] = self._new_session(idle)
            message = Message(
                "late" if late else "events",
                user.encode(),
                _json(record),
                event_time_ms=event_ms,
                clock_ms=now,
                event_type=event_type,
                finishes=finishes,
            )
            if not late:
                self._recent.append(message)
            yield message


def simulate(
    count: int, *, start_ms: int, step_ms: int = 100, **options
) -> tuple[list[Message], int]:
    """The first `count` messages the CLI sends with `--start start_ms --step-ms step_ms` and
    the same options (ActivitySimulator's fields; the CLI's --late-by-s is late_by_ms / 1000),
    and the clock after them (the report's clock_end_ms)."""
    clock = SimulatedClock(start_ms, step_ms)
    stream = ActivitySimulator(**options).messages(clock)
    return [next(stream) for _ in range(count)], clock.now


def self_check(message: Any, contract: Contract = EVENT) -> str | None:
    """The quarantine reason the bronze job should give this message (None: accepted)."""
    try:
        record = json.loads(message.value)
    except ValueError:
        return UNPARSEABLE
    return contract.violation(record)


# ---- report and verbose lines ---------------------------------------------------------


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def session_details(record: dict) -> str:
    return (
        f"user={record['user_id']} session={record['session_id']} "
        f"type={record['event_type']} page={record['page']}"
    )


def describe(message: Any, details: Callable[[dict], str] = session_details) -> str:
    """One line per sent message for --verbose; only late events' lines contain LATE.
    `details` renders a valid record's own fields (another pipeline passes its own)."""
    if message.kind == "malformed":
        return (
            f"BAD   reason={message.reason} key={message.key.decode()} "
            f"clock={iso(message.clock_ms)}"
        )
    record = json.loads(message.value)
    tag = {"events": "EVENT", "late": "LATE", "duplicates": "DUP"}[message.kind]
    line = (
        f"{tag:<5} event_id={record['event_id']} {details(record)} "
        f"event_time={iso(record['event_timestamp'])}"
    )
    behind_s = (message.clock_ms - message.event_time_ms) / 1000
    if message.kind == "late":
        line += f" ({behind_s:g} s behind)"
    elif message.kind == "duplicates":
        line += " (copy)"
    return line


@dataclass
class FeedReport:
    """What a feed sent: messages by kind (KINDS), malformed ones by reason, and the span of
    event time of the valid records. A pipeline's report adds its own counts."""

    counts: Counter = field(default_factory=Counter)
    malformed_by_reason: Counter = field(default_factory=Counter)
    first_event_ms: int | None = None
    last_event_ms: int | None = None

    def add(self, message: Any) -> None:
        self.counts[message.kind] += 1
        if message.kind == "malformed":
            self.malformed_by_reason[message.reason] += 1
            return
        event_ms = message.event_time_ms
        if self.first_event_ms is None or event_ms < self.first_event_ms:
            self.first_event_ms = event_ms
        if self.last_event_ms is None or event_ms > self.last_event_ms:
            self.last_event_ms = event_ms

    def summary(
        self,
        head: dict,
        details: dict,
        *,
        seed: int,
        clock: str,
        clock_end_ms: int,
        seconds: float,
    ) -> dict:
        """`head` (where it went), sent = the sum of by_kind, malformed_by_reason, `details`
        (the pipeline's counts), then first/last_event_ms: the smallest and largest
        event_timestamp of the valid records sent (late ones and duplicates included)."""
        total = sum(self.counts.values())
        return {
            **head,
            "sent": total,
            "by_kind": {kind: self.counts.get(kind, 0) for kind in KINDS},
            "malformed_by_reason": dict(sorted(self.malformed_by_reason.items())),
            **details,
            "first_event_ms": self.first_event_ms,
            "last_event_ms": self.last_event_ms,
            "clock": clock,
            "clock_end_ms": clock_end_ms,
            "seed": seed,
            "seconds": round(seconds, 3),
            "events_per_s": round(total / seconds) if seconds > 0 else None,
        }


@dataclass
class ActivityReport(FeedReport):
    sessions: Counter = field(default_factory=Counter)

    def add(self, message: Message) -> None:
        super().add(message)
        if message.kind in ("malformed", "duplicates"):
            return
        if message.event_type == "session_start":
            self.sessions["started"] += 1
        if message.finishes:
            self.sessions[message.finishes] += 1

    def as_dict(
        self, *, topic: str, seed: int, clock: str, clock_end_ms: int, seconds: float
    ) -> dict:
        started, ended, abandoned = (self.sessions[k] for k in ("started", "ended", "abandoned"))
        sessions = {
            "sessions_started": started,
            "sessions_ended": ended,
            "sessions_abandoned": abandoned,
            "sessions_open": started - ended - abandoned,
        }
        return self.summary(
            {"topic": topic},
            sessions,
            seed=seed,
            clock=clock,
            clock_end_ms=clock_end_ms,
            seconds=seconds,
        )


# ---- the I/O edge ---------------------------------------------------------------------


def send_all(
    producer,
    messages: Iterator[Any],
    topic: str | Callable[[Any], str],
    report: FeedReport,
    *,
    count: int = 0,
    duration: float = 0.0,
    rate: float = 0.0,
    stop: threading.Event | None = None,
    echo: Callable[[str], None] | None = None,
    render: Callable[[Any], str] = describe,
) -> None:
    """Send until `count` messages, `duration` seconds (0: no limit) or `stop` is set, at
    `rate` messages/s (0: as fast as possible), then flush. A message is generated only
    right before it is sent, and `report` counts exactly what was handed to the producer.
    `topic` is the topic, or a function giving each message's; `echo` gets `render(message)`."""
    stop = stop or threading.Event()
    started = time.monotonic()
    if stop.is_set():
        return
    try:
        for n, message in enumerate(messages, start=1):
            producer.send(
                topic(message) if callable(topic) else topic, key=message.key, value=message.value
            )
            report.add(message)
            if echo:
                echo(render(message))
            if stop.is_set() or not keep_sending(
                n, started, count=count, duration=duration, rate=rate, wait=stop.wait
            ):
                break
    finally:
        producer.flush()


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event that SIGTERM (the supervisor) and SIGINT set, instead of their usual effect,
    while the block runs: the send loop then ends between two messages, so what was sent is
    flushed and counted exactly, and the report is still printed."""
    stop = threading.Event()

    def request_stop(*_) -> None:
        # Not stop.set() here: the handler runs in the main thread, which may hold the
        # event's lock inside stop.wait(), and that lock is not reentrant.
        threading.Thread(target=stop.set, daemon=True).start()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_feed(
    bootstrap: str,
    topics: list[str],
    pipeline: str,
    send: Callable[[Any, threading.Event], None],
    summary: Callable[[float], dict],
    *,
    find_missing: Callable[[str, list[str]], list[str]],
    connect: Callable[[str], Any],
) -> None:
    """A feed's Kafka side: check the broker and the topics (one sentence and exit 2 when
    either is missing), then `send(producer, stop)` until done or stopped by SIGTERM/SIGINT,
    and print `summary(seconds)` as JSON, the last line, also when stopped or failing.
    `find_missing` and `connect` are the caller's, so its tests can replace them."""
    from kafka.errors import KafkaError

    with stop_on_signals() as stop:
        try:
            missing = find_missing(bootstrap, topics)
            producer = connect(bootstrap)
        except KafkaError:
            typer.echo(f"Kafka is not reachable at {bootstrap}: run `make up` first.")
            raise typer.Exit(2) from None
        if missing:
            producer.close()
            names, them = (
                (f"Topic {missing[0]} does", "it")
                if len(missing) == 1
                else (f"Topics {', '.join(missing)} do", "them")
            )
            typer.echo(
                f"{names} not exist on {bootstrap} (the broker does not create topics on "
                f"first use): create {them}, or start the platform with the {pipeline} "
                "pipeline registered."
            )
            raise typer.Exit(2)
        started = time.monotonic()
        try:
            send(producer, stop)
        finally:
            producer.close()
            print(json.dumps(summary(time.monotonic() - started)), flush=True)


def parse_start(value: str) -> int:
    """Epoch milliseconds from epoch ms or ISO-8601 (UTC unless it names an offset)."""
    text = value.strip()
    if text.lstrip("-").isdigit():
        start_ms = int(text)
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise typer.BadParameter(
                f"{value!r} is neither epoch milliseconds nor an ISO-8601 time "
                "(e.g. 2026-01-01T00:00:00Z)"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        start_ms = round(moment.timestamp() * 1000)
    if not MIN_EVENT_MS <= start_ms < MAX_EVENT_MS:
        raise typer.BadParameter(f"{value!r} is outside 2000-01-01 .. 2100-01-01")
    return start_ms


app = typer.Typer(add_completion=False)


@app.command()
def main(
    count: int = typer.Option(0, min=0, help="stop after this many messages, all kinds (0: none)"),
    duration_s: float = typer.Option(0.0, min=0.0, help="stop after this many seconds (0: none)"),
    rate: float | None = typer.Option(
        None,
        min=0.0,
        help="messages per second (0: as fast as possible) [default: 10 live, 0 with --start]",
    ),
    start: str = typer.Option(
        "",
        help="simulated clock: the first event time, ISO-8601 UTC or epoch ms (empty: live)",
    ),
    step_ms: int = typer.Option(100, min=1, help="simulated clock: time between messages"),
    users: int = typer.Option(1000, min=1, help="the pool of users"),
    concurrent: int = typer.Option(50, min=1, help="open sessions at once (at most --users)"),
    abandon_fraction: float = typer.Option(0.2, min=0.0, max=1.0, help="sessions never ended"),
    late_fraction: float = typer.Option(0.05, min=0.0, max=1.0),
    late_by_s: int = typer.Option(180, min=1, help="how far behind the clock late events are"),
    duplicate_fraction: float = typer.Option(0.0, min=0.0, max=1.0),
    malformed_fraction: float = typer.Option(0.0, min=0.0, max=1.0),
    seed: int | None = typer.Option(None, help=SEED_HELP),
    namespace: str = typer.Option("", help="send to the namespace's topic (user_activity-NS)"),
    verbose: bool = typer.Option(False, help="print one line per message sent (late: LATE)"),
) -> None:
    """Send simulated user activity to Kafka; print what was sent as JSON (last line)."""
    from lakehouse.layout import InvalidNamespace, Layout
    from lakehouse.settings import load_settings

    seed = run_seed(seed)

    start_ms = parse_start(start) if start else None
    try:
        simulator = ActivitySimulator(
            users=users,
            concurrent=concurrent,
            seed=seed,
            abandon_fraction=abandon_fraction,
            late_fraction=late_fraction,
            late_by_ms=late_by_s * 1000,
            duplicate_fraction=duplicate_fraction,
            malformed_fraction=malformed_fraction,
        )
    except ValueError as error:
        typer.echo(f"Cannot simulate that: {error}.")
        raise typer.Exit(2) from None
    settings = load_settings()
    try:
        topic = Layout(settings, namespace).topic(ACTIVITY_TOPIC)
    except InvalidNamespace as error:
        typer.echo(f"Refused: {error}.")
        raise typer.Exit(2) from None

    clock: Clock = SimulatedClock(start_ms, step_ms) if start_ms is not None else WallClock()
    pace = rate if rate is not None else (0.0 if start_ms is not None else 10.0)
    report = ActivityReport()

    def send(producer: Any, stop: threading.Event) -> None:
        send_all(
            producer,
            simulator.messages(clock),
            topic,
            report,
            count=count,
            duration=duration_s,
            rate=pace,
            stop=stop,
            echo=(lambda line: print(line, flush=True)) if verbose else None,
        )

    def summary(seconds: float) -> dict:
        live = start_ms is None
        return report.as_dict(
            topic=topic,
            seed=seed,
            clock="live" if live else "simulated",
            clock_end_ms=clock.now,
            seconds=seconds,
        )

    run_feed(
        settings.kafka_bootstrap,
        [topic],
        "activity",
        send,
        summary,
        find_missing=missing_topics,
        connect=open_producer,
    )


if __name__ == "__main__":
    app()
