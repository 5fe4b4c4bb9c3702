"""Helpers of the web activity tests: produce with the real producer, run the real driver,
and the oracle: what every table must hold, computed in pandas from the producer's events.

Which events are late is deterministic by construction. The first part of the input has no
late events and is drained (one micro-batch, then the watermark stands at the part's latest
event time minus 2 minutes). The second part continues the producer's clock for under a
minute: its on-time events are after the first part's end, so above the watermark; its late
events are 3 minutes behind its clock, so at least 2 minutes behind the first part's end
(minus that minute): always behind the watermark, whatever the batching.

The topics have one partition, so Kafka returns the events in the producer's clock order and
any batching of them cuts the clock at one point. With several partitions a capped batch
(--max-offsets) takes a share of each, and with 40 users the partitions' clocks drift
minutes apart: an on-time event of a slow partition can then be behind the watermark the
fast one set, and whether it is depends on where the batches were cut. That is watermarks
working as designed, but a run with a kill would no longer match one without.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

import pandas as pd

from lakehouse.layout import Layout
from lakehouse.pipelines.activity import JOB
from producers.activity import Message, simulate
from producers.activity_audit import WATERMARK_MS, EventOracle
from tests.market import driver_command, run_json, start_driver

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
STEP_MS = 200
USERS = 40
# The first part spans 25 minutes of event time (sessions that time out within it close),
# the second 50 seconds (under the minute that keeps its late events behind the watermark).
# Only the second part repeats events: the pipeline test kills the driver in the first, and
# every drop then happens in a clean drain that counts it.
PARTS = (
    {"count": 7500, "seed": 11, "late_fraction": 0.0, "duplicate_fraction": 0.0},
    {"count": 250, "seed": 12, "late_fraction": 0.2, "duplicate_fraction": 0.08},
)
COMMON = {"malformed_fraction": 0.02, "users": USERS, "concurrent": 12}


def produce(layout: Layout, part: dict, start_ms: int) -> dict:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in {**COMMON, **part}.items()]
    return run_json(
        [
            sys.executable,
            "-m",
            "producers.activity",
            "--rate=0",
            f"--start={start_ms}",
            f"--step-ms={STEP_MS}",
            f"--namespace={layout.namespace}",
            *flags,
        ],
        timeout=300,
    )


def produce_all(layout: Layout, between=None) -> list[dict]:
    """Both parts; `between(report)` runs after the first (the test drains there)."""
    first = produce(layout, PARTS[0], START_MS)
    if between:
        between(first)
    second = produce(layout, PARTS[1], first["clock_end_ms"])
    return [first, second]


def regenerated(reports: list[dict]) -> list[list[Message]]:
    """The messages each producer run sent, generated again in-process (deterministic)."""
    parts = []
    start = START_MS
    for part, report in zip(PARTS, reports, strict=True):
        options = {**COMMON, **part}
        count = options.pop("count")
        messages, clock_end = simulate(count, start_ms=start, step_ms=STEP_MS, **options)
        assert clock_end == report["clock_end_ms"]
        parts.append(messages)
        start = clock_end
    return parts


def pipeline_command(layout: Layout, *extra: str) -> list[str]:
    return driver_command(JOB, layout, "--param", "activity.buckets=4", *extra)


def run_once(layout: Layout) -> dict:
    return run_json(pipeline_command(layout, "--once"), timeout=900)


def start_pipeline(layout: Layout, *extra: str) -> subprocess.Popen:
    return start_driver(pipeline_command(layout, *extra))


@dataclass
class Oracle(EventOracle):
    """The audit's oracle of the derived sinks, with what bronze must drop and quarantine."""

    late: int
    duplicates: int
    malformed: dict[str, int]  # quarantine reason -> count


def oracle(parts: list[list[Message]]) -> Oracle:
    """Replays bronze's rules on the produced messages: malformed -> quarantine; a valid
    event at or behind the watermark left by the previous drain -> dropped late; a repeated
    event id -> dropped duplicate; the rest accepted."""
    accepted: list[dict] = []
    seen: set[str] = set()
    late = duplicates = 0
    malformed: dict[str, int] = {}
    watermark = None
    for messages in parts:
        for message in messages:
            if message.kind == "malformed":
                malformed[message.reason] = malformed.get(message.reason, 0) + 1
                continue
            event = json.loads(message.value)
            if watermark is not None and event["event_timestamp"] <= watermark:
                late += 1
            elif event["event_id"] in seen:
                duplicates += 1
            else:
                seen.add(event["event_id"])
                accepted.append(event)
        watermark = max(e["event_timestamp"] for e in accepted) - WATERMARK_MS
    frame = pd.DataFrame(accepted).rename(columns={"event_timestamp": "event_time_ms"})
    return Oracle(frame, late, duplicates, malformed)
