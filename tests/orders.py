"""Helpers of the orders tests: the oracle, in plain Python from the producer's messages, of
what bronze accepts, drops and quarantines, and of every order's final state
(lakehouse/pipelines/orders/oracle.py, the matching semantics computed independently of
Spark, applied to the events bronze must accept).

Which events are late is the producer's word (Message.kind == "late"): it stamps them
`late_by_ms` behind its clock. They are surely behind bronze's watermark (2 minutes behind the
largest event time seen) only when the events they trail were read in an earlier
micro-batch: a test drains a part without late events first, then sends the part with them
(as tests/activity.py explains), and keeps late_by_ms - 2 minutes above the span of event
time it sends after that drain. Duplicates repeat one of the last 20 messages: with
step_ms * 20 well under 2 minutes they are never behind the watermark either, so bronze
counts them as duplicates.

Every order's final state assumes the watermark has passed every deadline (each order's
first event + timeout); a stream that stops earlier can pass `watermark_ms` to leave the
orders still inside their window unexpired, as the state function does.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterable
from typing import Any

from lakehouse.pipelines.orders import (  # noqa: F401 (the tests' names)
    AMOUNT_MISMATCH,
    AWAITING_ORDER,
    AWAITING_PAYMENT,
    CANCELLED,
    EVENT_TYPES,
    EXPIRED,
    PAID,
    REFUNDED,
    STATUSES,
)
from lakehouse.pipelines.orders.oracle import (  # noqa: F401 (the tests' names)
    FINAL_STATUSES,
    TIMEOUT_MS,
    WATERMARK_MS,
    derived_status,
    order_facts,
    states_of,
)
from producers.orders import Message


def accepted_events(messages: Iterable[Message]) -> list[dict]:
    """The records bronze keeps, once each: the on-time valid ones, first of each event id
    (duplicates and late events are dropped, malformed ones quarantined), in sending order."""
    seen: set[str] = set()
    accepted = []
    for message in messages:
        if message.kind != "events":
            continue
        record = json.loads(message.value)
        if record["event_id"] not in seen:
            seen.add(record["event_id"])
            accepted.append(record)
    return accepted


def expected_quarantine(messages: Iterable[Message]) -> dict[str, int]:
    """Quarantine reason -> how many records bronze must quarantine with it."""
    return dict(Counter(m.reason for m in messages if m.kind == "malformed"))


def expected_counts(*reports: dict) -> dict[str, Any]:
    """What bronze must count over the producer runs whose JSON reports these are:
    accepted (by event type), dropped late, dropped duplicates, quarantined (by reason)."""
    total: Counter = Counter()
    by_type: Counter = Counter()
    reasons: Counter = Counter()
    for report in reports:
        total.update(report["by_kind"])
        by_type.update(report["events_by_type"])
        reasons.update(report["malformed_by_reason"])
    return {
        "accepted": total["events"],
        "accepted_by_type": {t: by_type[t] for t in EVENT_TYPES},
        "late": total["late"],
        "duplicates": total["duplicates"],
        "quarantined": total["malformed"],
        "quarantine_reasons": dict(sorted(reasons.items())),
    }


def final_states(
    messages: Iterable[Message],
    timeout_ms: int = TIMEOUT_MS,
    watermark_ms: int | None = None,
) -> dict[str, dict]:
    """order id -> status, order_amount, paid_amount, order_time_ms, payment_time_ms,
    order_to_payment_ms, from the accepted events (malformed, late and duplicates left out;
    lakehouse/pipelines/orders/oracle.py says how). With `watermark_ms` None the watermark
    is past every deadline."""
    return states_of(accepted_events(messages), timeout_ms, watermark_ms)


def status_counts(states: dict[str, dict]) -> dict[str, int]:
    counted = Counter(state["status"] for state in states.values())
    return {status: counted[status] for status in STATUSES if counted[status]}


# ---- running the real producer (the pipeline tests) -----------------------------------


def producer_command(*, namespace: str, count: int, start_ms: int, step_ms: int, **options):
    """The CLI line sending what simulate(count, start_ms=..., step_ms=..., **options)
    regenerates (late_by_ms as --late-by-s)."""
    if "late_by_ms" in options:
        late_by_ms = options.pop("late_by_ms")
        assert late_by_ms % 1000 == 0, "the CLI takes whole seconds"
        options["late_by_s"] = late_by_ms // 1000
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in options.items()]
    return [
        sys.executable,
        "-m",
        "producers.orders",
        "--rate=0",
        f"--count={count}",
        f"--start={start_ms}",
        f"--step-ms={step_ms}",
        f"--namespace={namespace}",
        *flags,
    ]


def produce(*, namespace: str, count: int, start_ms: int, step_ms: int, **options) -> dict:
    """Run the producer to completion (Kafka needed); its JSON report."""
    from tests.market import run_json  # Kafka and Postgres clients: only where needed

    command = producer_command(
        namespace=namespace, count=count, start_ms=start_ms, step_ms=step_ms, **options
    )
    return run_json(command, timeout=300)
