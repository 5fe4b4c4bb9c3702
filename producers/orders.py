"""Orders and payments simulator: order_created / order_cancelled to Kafka `orders`,
payment_received / payment_refunded to `payments`.

Event generation is pure (same seed, options and simulated start -> byte-identical
messages); sending is the I/O edge. Messages are JSON with a `schema_version` (the contract
in lakehouse/pipelines/orders), keyed by order id so one order's events keep their order
within a partition of each topic.

Many orders are open at once (at most `--concurrent`), so their events interleave. Each
order has a plan drawn when it opens: paid (order, then its payment a few seconds to a few
minutes later; a `--payment-first` share of paid-like orders sends the payment first),
amount_mismatch (`--mismatch`: the payment's amount differs), refund (`--refund`: a refund
after the payment), cancel (`--cancel`: an unpaid order cancelled, or a paid one cancelled
and refunded) or missing partner (`--missing-partner`: only the order, or only the payment,
is ever sent). Every follow-up comes well within the order's 30-minute window (at most about
12 minutes after its first event). Per message it mixes in late events (an order's next
event stamped `--late-by-s` behind the clock), exact duplicates and malformed records, and
at the end prints one JSON line saying how many of each it sent.

The clock is the wall clock (live, paced at `--rate`), or simulated with `--start`: the
first event is stamped `--start`, each message advances the clock by `--step-ms`. Delays
are planned in messages (the planned delay over --step-ms, or over 1/--rate live), so the
same seed sends the same events in the same order live and simulated.

    python -m producers.orders --verbose | grep LATE
    python -m producers.orders --start 2026-01-01T00:00:00Z --count 100000 --seed 7
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import typer

from lakehouse.contracts import UNPARSEABLE
from lakehouse.pipelines.orders import (
    EVENT,
    EVENT_TYPES,
    ORDER_CANCELLED,
    ORDER_CREATED,
    ORDERS_TOPIC,
    PAYMENT_RECEIVED,
    PAYMENT_REFUNDED,
    PAYMENTS_TOPIC,
)
from producers import activity
from producers.activity import (
    Clock,
    FeedReport,
    SimulatedClock,
    WallClock,
    _json,
    parse_start,
    random_uuid,
    run_feed,
    send_all,
)
from producers.market import missing_topics, open_producer
from producers.seeds import SEED_HELP, run_seed

TOPIC_OF = {
    ORDER_CREATED: ORDERS_TOPIC,
    ORDER_CANCELLED: ORDERS_TOPIC,
    PAYMENT_RECEIVED: PAYMENTS_TOPIC,
    PAYMENT_REFUNDED: PAYMENTS_TOPIC,
}
# An order's plan, drawn when it opens.
PAID = "paid"
MISMATCH = "mismatch"  # the payment's amount differs from the order's
REFUND = "refund"  # paid, then refunded
CANCEL_UNPAID = "cancel_unpaid"  # order, then its cancellation; never paid
CANCEL_PAID = "cancel_paid"  # paid, cancelled, then refunded
MISSING_PAYMENT = "missing_payment"  # only the order is ever sent
MISSING_ORDER = "missing_order"  # only the payment is ever sent
PLANS = (PAID, MISMATCH, REFUND, CANCEL_UNPAID, CANCEL_PAID, MISSING_PAYMENT, MISSING_ORDER)
# Malformed variants and the quarantine reason the bronze contract gives each.
MALFORMED_REASONS = {
    "unparseable": UNPARSEABLE,  # not JSON at all
    "mistyped": UNPARSEABLE,  # amount as a string
    "missing_order_id": "missing_order_id",
    "unknown_event_type": "unknown_event_type",
    "non_positive_amount": "non_positive_amount",
    "unknown_schema_version": "unknown_schema_version",
}
RECENT = 20  # a duplicate repeats one of the last this many on-time events
# Planned delays (ms), log-uniform: payment vs order, and each later follow-up. Three steps
# of at most 4 minutes keep an order's events within 12 minutes of its first one.
PAYMENT_DELAY_MS = (2_000, 240_000)
FOLLOW_UP_DELAY_MS = (5_000, 240_000)
MIN_CENTS, MAX_CENTS = 500, 50_000


@dataclass(frozen=True)
class Message:
    kind: str  # events (valid, on time) | late | duplicates | malformed
    topic: str  # ORDERS_TOPIC or PAYMENTS_TOPIC (the CLI adds the namespace)
    key: bytes  # the order id
    value: bytes
    reason: str | None = None  # for malformed: the quarantine reason it should get
    event_time_ms: int = 0  # the event_timestamp it carries (the clock for malformed ones)
    clock_ms: int = 0  # the clock when it was generated
    event_type: str | None = None  # of a valid record
    plan: str | None = None  # on an order's first message (late or not): the order's plan
    last: bool = False  # on an order's last message


@dataclass
class _Order:
    order_id: str
    customer_id: str
    plan: str
    pending: int = 0  # its messages not sent yet


def customer_name(index: int, customers: int) -> str:
    """0 -> c000000; wider when the pool needs more digits."""
    return f"c{index:0{max(6, len(str(customers - 1)))}d}"


@dataclass
class OrdersSimulator:
    """One stream of messages: `messages(clock, tick_ms)` may be iterated once per simulator.
    Shares: payment_first of the orders with both an order and a payment; missing_partner,
    cancel, refund and mismatch of the orders; late, duplicates and malformed of the
    messages."""

    customers: int = 1000
    concurrent: int = 1000  # at most this many orders with events still to send
    seed: int = 42
    payment_first: float = 0.2
    missing_partner: float = 0.05
    mismatch: float = 0.05
    cancel: float = 0.05
    refund: float = 0.05
    late: float = 0.02
    late_by_ms: int = 300_000
    duplicates: float = 0.0
    malformed: float = 0.0
    _rng: random.Random = field(init=False)
    _recent: deque = field(init=False)

    def __post_init__(self) -> None:
        if self.customers < 1 or self.concurrent < 1:
            raise ValueError("customers and concurrent orders must be at least 1")
        shares = (
            self.payment_first,
            self.missing_partner,
            self.mismatch,
            self.cancel,
            self.refund,
            self.late,
            self.duplicates,
            self.malformed,
        )
        if not all(0.0 <= s <= 1.0 for s in shares):
            raise ValueError("every share must be between 0 and 1")
        if self.missing_partner + self.mismatch + self.cancel + self.refund > 1.0:
            raise ValueError("missing-partner, mismatch, cancel and refund add up to more than 1")
        if self.late + self.duplicates + self.malformed > 1.0:
            raise ValueError("late, duplicate and malformed shares add up to more than 1")
        if self.late_by_ms < 0:
            raise ValueError("late_by_ms must not be negative")
        self._rng = random.Random(self.seed)
        self._recent = deque(maxlen=RECENT)

    # ---- records ----------------------------------------------------------------------

    def _new_order(self, plan: str) -> _Order:
        rng = self._rng
        customer = customer_name(rng.randrange(self.customers), self.customers)
        return _Order(f"o-{rng.getrandbits(64):016x}", customer, plan)

    def record(self, order: _Order, event_type: str, cents: int, event_ms: int) -> dict:
        return {
            "schema_version": EVENT.latest.version,
            "event_id": random_uuid(self._rng),
            "order_id": order.order_id,
            "customer_id": order.customer_id,
            "event_type": event_type,
            "amount": cents / 100,  # 2 decimals; round(amount * 100) gives the cents back
            "event_timestamp": event_ms,
        }

    def malformed_message(self, now: int) -> Message:
        rng = self._rng
        variant = rng.choice(tuple(MALFORMED_REASONS))
        event_type = rng.choice(EVENT_TYPES)
        # A fresh order id: a quarantined record never touches a simulated order.
        order = self._new_order("")
        record = self.record(order, event_type, rng.randint(MIN_CENTS, MAX_CENTS), now)
        if variant == "unparseable":
            value = _json(record)
            value = value[: len(value) // 2]  # cut inside the object: never valid JSON
        else:
            if variant == "mistyped":
                record["amount"] = str(record["amount"])
            elif variant == "missing_order_id":
                del record["order_id"]
            elif variant == "unknown_event_type":
                record["event_type"] = rng.choice(("order_shipped", "payment_failed", "Paid"))
            elif variant == "non_positive_amount":
                record["amount"] = -record["amount"]
            elif variant == "unknown_schema_version":
                record["schema_version"] = 99
            value = _json(record)
        return Message(
            "malformed",
            TOPIC_OF[event_type],
            order.order_id.encode(),
            value,
            MALFORMED_REASONS[variant],
            event_time_ms=now,
            clock_ms=now,
        )

    # ---- orders -----------------------------------------------------------------------

    def _plan(self) -> str:
        rng = self._rng
        draw = rng.random()
        for share, plans in (
            (self.missing_partner, (MISSING_PAYMENT, MISSING_ORDER)),
            (self.cancel, (CANCEL_UNPAID, CANCEL_PAID)),
            (self.refund, (REFUND,)),
            (self.mismatch, (MISMATCH,)),
        ):
            if draw < share:
                return rng.choice(plans)
            draw -= share
        return PAID

    def _delay_ms(self, bounds: tuple[int, int]) -> float:
        low, high = bounds
        return low * (high / low) ** self._rng.random()  # log-uniform: mostly seconds

    def _events(self, plan: str) -> list[tuple[float, str, int]]:
        """The order's events as (ms after its first event, event type, amount in cents)."""
        rng = self._rng
        cents = rng.randint(MIN_CENTS, MAX_CENTS)
        if plan == MISSING_ORDER:
            return [(0.0, PAYMENT_RECEIVED, cents)]
        if plan == MISSING_PAYMENT:
            return [(0.0, ORDER_CREATED, cents)]
        if plan == CANCEL_UNPAID:
            return [
                (0.0, ORDER_CREATED, cents),
                (self._delay_ms(FOLLOW_UP_DELAY_MS), ORDER_CANCELLED, cents),
            ]
        paid = cents
        if plan == MISMATCH:  # off by up to a tenth, never zero: cents >= MIN_CENTS
            paid += rng.choice((-1, 1)) * rng.randint(1, cents // 10)
        at = self._delay_ms(PAYMENT_DELAY_MS)
        if rng.random() < self.payment_first:
            events = [(0.0, PAYMENT_RECEIVED, paid), (at, ORDER_CREATED, cents)]
        else:
            events = [(0.0, ORDER_CREATED, cents), (at, PAYMENT_RECEIVED, paid)]
        if plan == CANCEL_PAID:
            at += self._delay_ms(FOLLOW_UP_DELAY_MS)
            events.append((at, ORDER_CANCELLED, cents))
        if plan in (CANCEL_PAID, REFUND):
            at += self._delay_ms(FOLLOW_UP_DELAY_MS)
            events.append((at, PAYMENT_REFUNDED, paid))
        return events

    def messages(self, clock: Clock, tick_ms: float = 100.0) -> Iterator[Message]:
        """Messages forever, each stamped by one `clock.tick()`; `tick_ms` is the time one
        message is meant to take (the simulated clock's step), to plan delays in messages.

        Each step sends the earliest due follow-up of an open order, or (none due, and fewer
        than `concurrent` open) opens a new order with its first event; with `concurrent`
        open, the earliest follow-up goes early. The random draws never depend on the
        clock's values, so a live and a simulated feed with the same seed, options and
        tick_ms send the same events (only their times differ)."""
        rng = self._rng
        queue: list[tuple[int, int, _Order, str, int]] = []  # (due step, seq, order, type, cents)
        seq = itertools.count()
        open_orders = 0
        malformed = self.malformed
        duplicate = malformed + self.duplicates
        late_below = duplicate + self.late
        for step in itertools.count():
            now = clock.tick()
            draw = rng.random()
            if draw < malformed:
                yield self.malformed_message(now)
                continue
            if draw < duplicate and self._recent:
                copy = rng.choice(self._recent)
                yield replace(copy, kind="duplicates", clock_ms=now, plan=None, last=False)
                continue
            late = duplicate <= draw < late_below
            plan = None
            if queue and (queue[0][0] <= step or open_orders >= self.concurrent):
                _, _, order, event_type, cents = heapq.heappop(queue)
                order.pending -= 1
                open_orders -= order.pending == 0
            else:
                plan = self._plan()
                order = self._new_order(plan)
                (_, event_type, cents), *follow_ups = self._events(plan)
                due = step
                for at_ms, follow_up, amount in follow_ups:
                    # at least one step after the previous one: the plan's order is kept
                    due = max(due + 1, step + round(at_ms / tick_ms))
                    heapq.heappush(queue, (due, next(seq), order, follow_up, amount))
                order.pending = len(follow_ups)
                open_orders += order.pending > 0
            event_ms = now - self.late_by_ms if late else now
            record = self.record(order, event_type, cents, event_ms)
            message = Message(
                "late" if late else "events",
                TOPIC_OF[event_type],
                order.order_id.encode(),
                _json(record),
                event_time_ms=event_ms,
                clock_ms=now,
                event_type=event_type,
                plan=plan,
                last=order.pending == 0,
            )
            if not late:
                self._recent.append(message)
            yield message


def simulate(
    count: int, *, start_ms: int, step_ms: int = 100, **options
) -> tuple[list[Message], int]:
    """The first `count` messages (all kinds) the CLI sends with `--start start_ms --step-ms
    step_ms` and the same options (OrdersSimulator's fields; the CLI's --late-by-s is
    late_by_ms / 1000), and the clock after them (the report's clock_end_ms). A list, so a
    test may also send it shuffled."""
    clock = SimulatedClock(start_ms, step_ms)
    stream = OrdersSimulator(**options).messages(clock, tick_ms=step_ms)
    return [next(stream) for _ in range(count)], clock.now


def self_check(message: Message) -> str | None:
    """The quarantine reason the bronze job should give this message (None: accepted)."""
    return activity.self_check(message, EVENT)


def order_details(record: dict) -> str:
    return (
        f"topic={TOPIC_OF.get(record['event_type'])} order={record['order_id']} "
        f"type={record['event_type']} amount={record['amount']:.2f}"
    )


def describe(message: Message) -> str:
    """One line per sent message for --verbose; only late events' lines contain LATE."""
    return activity.describe(message, order_details)


@dataclass
class OrdersReport(FeedReport):
    by_topic: Counter = field(default_factory=Counter)  # all messages, by base topic
    events_by_type: Counter = field(default_factory=Counter)  # on-time events
    late_by_type: Counter = field(default_factory=Counter)
    plans: Counter = field(default_factory=Counter)  # orders opened, by plan
    payment_first: int = 0  # orders opened by their payment though they have an order
    finished: int = 0  # orders whose last message was sent

    def add(self, message: Message) -> None:
        super().add(message)
        self.by_topic[message.topic] += 1
        if message.kind not in ("events", "late"):
            return
        by_type = self.events_by_type if message.kind == "events" else self.late_by_type
        by_type[message.event_type] += 1
        if message.plan:
            self.plans[message.plan] += 1
            if message.event_type == PAYMENT_RECEIVED and message.plan != MISSING_ORDER:
                self.payment_first += 1
        self.finished += message.last

    def as_dict(
        self,
        *,
        topics: dict[str, str],
        seed: int,
        tick_ms: float,
        clock: str,
        clock_end_ms: int,
        seconds: float,
    ) -> dict:
        """topics: base name -> the topic sent to; by_topic counts every message by base
        name; orders_open: opened orders with messages still to send when it stopped;
        tick_ms: the planned time per message, which (with the seed) fixes the stream."""
        opened = sum(self.plans.values())
        details = {
            "by_topic": {topic: self.by_topic.get(topic, 0) for topic in topics},
            "events_by_type": {t: self.events_by_type.get(t, 0) for t in EVENT_TYPES},
            "late_by_type": {t: self.late_by_type.get(t, 0) for t in EVENT_TYPES},
            "orders": opened,
            "orders_by_plan": {plan: self.plans.get(plan, 0) for plan in PLANS},
            "orders_finished": self.finished,
            "orders_open": opened - self.finished,
            "missing_partners": self.plans[MISSING_PAYMENT] + self.plans[MISSING_ORDER],
            "payment_first": self.payment_first,
        }
        return self.summary(
            {"topics": topics, "tick_ms": tick_ms},
            details,
            seed=seed,
            clock=clock,
            clock_end_ms=clock_end_ms,
            seconds=seconds,
        )


# ---- the I/O edge ---------------------------------------------------------------------

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
    customers: int = typer.Option(1000, min=1, help="the pool of customers"),
    concurrent: int = typer.Option(1000, min=1, help="orders open at once, at most"),
    payment_first: float = typer.Option(0.2, min=0.0, max=1.0, help="payment before its order"),
    missing_partner: float = typer.Option(0.05, min=0.0, max=1.0, help="order or payment only"),
    mismatch: float = typer.Option(0.05, min=0.0, max=1.0, help="paid amount differs"),
    cancel: float = typer.Option(0.05, min=0.0, max=1.0, help="orders cancelled"),
    refund: float = typer.Option(0.05, min=0.0, max=1.0, help="paid orders refunded"),
    late: float = typer.Option(0.02, min=0.0, max=1.0, help="messages sent late"),
    late_by_s: int = typer.Option(300, min=1, help="how far behind the clock late events are"),
    duplicates: float = typer.Option(0.0, min=0.0, max=1.0, help="messages sent twice"),
    malformed: float = typer.Option(0.0, min=0.0, max=1.0, help="malformed messages"),
    seed: int | None = typer.Option(None, help=SEED_HELP),
    namespace: str = typer.Option("", help="send to the namespace's topics (orders-NS, ...)"),
    verbose: bool = typer.Option(False, help="print one line per message sent (late: LATE)"),
) -> None:
    """Send simulated orders and payments to Kafka; print what was sent as JSON (last line)."""
    from lakehouse.layout import InvalidNamespace, Layout
    from lakehouse.settings import load_settings

    seed = run_seed(seed)

    start_ms = parse_start(start) if start else None
    try:
        simulator = OrdersSimulator(
            customers=customers,
            concurrent=concurrent,
            seed=seed,
            payment_first=payment_first,
            missing_partner=missing_partner,
            mismatch=mismatch,
            cancel=cancel,
            refund=refund,
            late=late,
            late_by_ms=late_by_s * 1000,
            duplicates=duplicates,
            malformed=malformed,
        )
    except ValueError as error:
        typer.echo(f"Cannot simulate that: {error}.")
        raise typer.Exit(2) from None
    settings = load_settings()
    try:
        layout = Layout(settings, namespace)
        topics = {base: layout.topic(base) for base in (ORDERS_TOPIC, PAYMENTS_TOPIC)}
    except InvalidNamespace as error:
        typer.echo(f"Refused: {error}.")
        raise typer.Exit(2) from None

    clock: Clock = SimulatedClock(start_ms, step_ms) if start_ms is not None else WallClock()
    pace = rate if rate is not None else (0.0 if start_ms is not None else 10.0)
    # Live, a message takes 1/pace s; as fast as possible, delays shrink to 1 ms a step.
    tick_ms = step_ms if start_ms is not None else (1000 / pace if pace > 0 else 1.0)
    report = OrdersReport()

    def send(producer: Any, stop: threading.Event) -> None:
        send_all(
            producer,
            simulator.messages(clock, tick_ms),
            lambda message: topics[message.topic],
            report,
            count=count,
            duration=duration_s,
            rate=pace,
            stop=stop,
            echo=(lambda line: print(line, flush=True)) if verbose else None,
            render=describe,
        )

    def summary(seconds: float) -> dict:
        live = start_ms is None
        return report.as_dict(
            topics=topics,
            seed=seed,
            tick_ms=tick_ms,
            clock="live" if live else "simulated",
            clock_end_ms=clock.now,
            seconds=seconds,
        )

    run_feed(
        settings.kafka_bootstrap,
        list(topics.values()),
        "orders",
        send,
        summary,
        find_missing=missing_topics,
        connect=open_producer,
    )


if __name__ == "__main__":
    app()
