"""Benchmark of the web activity pipeline's stateful operators (`lakehouse bench activity`).

Variants, all reading the same generated input as a file stream on the same Spark session,
in the same run:

- `sessions`: `sessions.transform`, the sessionization (applyInPandasWithState over user
  hash buckets, `sessions_state.step` in the Python worker, RocksDB state);
- `passthrough`: the same bucketed applyInPandasWithState with `bucketed_state.passthrough_bucket`,
  a function that returns its input: the operator's cost with every row going to Python and
  back. The sessions emit one row per closed session (about an eighth of their input), so
  they can be faster than this;
- `drain`: the same operator with a function that reads its input and returns nothing: what
  any function that reads its rows pays, so sessions / drain is the share of the time left
  after the state function and its output;
- `stateless`: `sessions.bucketed` alone, the operator's input projection;
- `page_views` and `active_users`: the two window aggregations of `windows.py`, each its
  own query (as in the pipeline); `windows_rows_per_s` is input rows / the two queries'
  time added up, the rate at which the pair gets through the input.

Input: activity events generated with numpy (not the producer, so 1M rows take a second),
written to local Parquet, one file of `batch_rows` rows per micro-batch, read with
maxFilesPerTrigger=1 and availableNow. Sessions start at SESSIONS_PER_S of event time, each
a session_start, 2 to 12 page views / clicks / add-to-carts half a second to two minutes
apart (about 2.5 minutes a session), then a session_end, or nothing for ABANDONED of them;
users are drawn uniformly from `users`. Rows are in event-time order, so every file moves
the watermark on (1M rows cover about 3.3 hours of event time, a 250k-row batch about 50
minutes): sessions end and time out (the 15-minute timeout) during the run, and the open
ones (a few thousand) stay in state. The session structure is the same for every user count
(only the users drawn differ), so the sessions figure at 10,000 and at 1,000,000 users
compares like for like.

A figure is the steady rate: rows of the micro-batches with data after the first, divided
by their time (Spark's triggerExecution). The first pays Python worker and RocksDB
start-up; the no-data batch availableNow ends with (closing on the last watermark, about
the fixed cost of a batch) is not counted either, as a running stream has none while data
comes. Median over `repeat` runs, interleaved so machine noise spreads over the variants
alike. Sink: Spark's `noop` (rows are produced, then dropped; the window queries in update
mode, as the pipeline runs them), so no variant pays for writing output the others do not
write. The sessions' output is checked: the number of sessions emitted must equal the
sessions the final watermark closes, computed from the generated input. The file input,
the timing, the interleaving and the medians are spark/bench_common.py's, shared with the
orders bench.
"""

from __future__ import annotations

import shutil
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming.state import GroupState, GroupStateTimeout
from pyspark.sql.types import StringType, StructField, StructType, TimestampType

from lakehouse.params import duration_ms
from lakehouse.pipelines.activity import DEFAULT_PARAMS
from spark import bucketed_state
from spark.bench_common import file_stream, interleaved, medians, run_to_noop, write_batches
from spark.bench_common import steady as steady  # the activity bench's test reads it here
from spark.jobs.activity import sessions, windows

PARAMS = dict(DEFAULT_PARAMS)
WATERMARK = PARAMS["watermark"]
TIMEOUT_MS = duration_ms(PARAMS["session_timeout"], "session timeout")
BUCKETS = int(PARAMS["buckets"])

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SESSIONS_PER_S = 10  # session starts per second of event time
ABANDONED = 0.2  # share of sessions without a session_end
MIN_ACTIONS, MAX_ACTIONS = 2, 12  # page views, clicks, add-to-carts per session
MEAN_GAP_MS, MIN_GAP_MS, MAX_GAP_MS = 20_000, 500, 120_000  # between a session's events
ACTIONS = ("page_view", "page_view", "page_view", "click", "click", "add_to_cart")
EVENT_TYPES = ("session_start", "session_end", *sorted(set(ACTIONS)))
ENTRY_PAGES = ("/", "/search", "/products", "/deals")
PAGES = (
    *ENTRY_PAGES,
    "/cart",
    "/checkout",
    "/account",
    "/help",
    *(f"/products/{n}" for n in range(1, 41)),
)
EVENT_SCHEMA = StructType(
    [
        StructField("user_id", StringType()),
        StructField("session_id", StringType()),
        StructField("event_type", StringType()),
        StructField("page", StringType()),
        StructField("event_time", TimestampType()),
    ]
)
_ARROW_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("session_id", pa.string()),
        ("event_type", pa.string()),
        ("page", pa.string()),
        ("event_time", pa.timestamp("ms", tz="UTC")),
    ]
)


def user_name(index: np.ndarray, users: int) -> np.ndarray:
    """As the producer names them: u000000, wider when the pool needs more digits."""
    width = max(6, len(str(users - 1)))
    return np.char.add("u", np.char.zfill(index.astype(str), width))


def generate_events(
    rows: int, users: int, seed: int, *, timeout_ms: int = TIMEOUT_MS, watermark_ms: int = 0
) -> tuple[pa.Table, dict]:
    """`rows` events in event-time order, and what they should give: the number of sessions
    and how many of them close by the last watermark (max event time - watermark_ms).

    The session structure (lengths, times, types, pages) depends on `seed` only; `users`
    only on which user each session belongs to."""
    rng = np.random.default_rng(seed)
    estimate = rows // 3 + 16  # sessions have at least 3 events
    actions = rng.integers(MIN_ACTIONS, MAX_ACTIONS + 1, estimate)
    abandoned = rng.random(estimate) < ABANDONED
    lengths = actions + np.where(abandoned, 1, 2)
    ends = np.cumsum(lengths)
    count = int(np.searchsorted(ends, rows)) + 1  # sessions needed to reach `rows`
    lengths, abandoned = lengths[:count].copy(), abandoned[:count].copy()
    lengths[-1] -= int(ends[count - 1]) - rows  # the last one cut to fit
    abandoned[-1] |= int(ends[count - 1]) != rows
    span_ms = count * 1000 // SESSIONS_PER_S
    starts = np.sort(rng.integers(0, span_ms, count))

    session = np.repeat(np.arange(count), lengths)  # per event, its session
    first = np.cumsum(lengths) - lengths  # per session, the index of its first event
    position = np.arange(rows) - first[session]  # per event, its place in the session
    gaps = np.clip(rng.exponential(MEAN_GAP_MS, rows), MIN_GAP_MS, MAX_GAP_MS).astype(np.int64)
    gaps[position == 0] = 0
    elapsed = np.cumsum(gaps)
    elapsed -= elapsed[first][session]
    event_ms = START_MS + starts[session] + elapsed

    kind = rng.integers(0, len(ACTIONS), rows)
    types = np.array(ACTIONS, dtype=object)[kind]
    is_last = position == lengths[session] - 1
    types[position == 0] = "session_start"
    types[is_last & ~abandoned[session]] = "session_end"
    pages = rng.integers(0, len(PAGES), rows)
    pages[position == 0] = rng.integers(0, len(ENTRY_PAGES), int((position == 0).sum()))

    user_of = np.random.default_rng([seed, users]).integers(0, users, count)
    ids = rng.bytes(16 * count)
    session_ids = [str(uuid.UUID(bytes=ids[i : i + 16])) for i in range(0, 16 * count, 16)]

    order = np.argsort(event_ms, kind="stable")
    session, event_ms = session[order], event_ms[order]
    take = pa.array(session)
    table = pa.table(
        [
            pa.array(user_name(user_of, users)).take(take),
            pa.array(session_ids).take(take),
            pa.array(types[order], pa.string()),
            pa.array(PAGES).take(pa.array(pages[order])),
            pa.array(event_ms, pa.timestamp("ms", tz="UTC")),
        ],
        schema=_ARROW_SCHEMA,
    )
    last_ms = START_MS + starts + elapsed[first + lengths - 1]
    threshold = np.where(abandoned, last_ms + timeout_ms, last_ms)
    final_watermark = int(event_ms[-1]) - watermark_ms
    expected = {
        "sessions": count,
        "closed_sessions": int((threshold < final_watermark).sum()),
        "event_time_span_s": round((int(event_ms[-1]) - int(event_ms[0])) / 1000),
    }
    return table, expected


def write_input(
    folder: Path, rows: int, users: int, batch_rows: int, seed: int, watermark_ms: int
) -> dict:
    """One Parquet file per micro-batch, in event-time order."""
    table, expected = generate_events(rows, users, seed, watermark_ms=watermark_ms)
    write_batches(folder, table, batch_rows)
    return expected


def stateless(events: DataFrame, buckets: int) -> DataFrame:
    return sessions.bucketed(events, watermark=WATERMARK, buckets=buckets)


def passthrough(events: DataFrame, buckets: int) -> DataFrame:
    return bucketed_state.pass_through(
        sessions.bucketed(events, watermark=WATERMARK, buckets=buckets)
    )


def _drain(key: tuple, chunks: Iterator[pd.DataFrame], state: GroupState):
    for _ in chunks:  # each chunk converted to pandas, as sessionize_bucket has them
        pass
    yield from ()


def drain(events: DataFrame, buckets: int) -> DataFrame:
    """The operator with a function that reads its input and returns nothing: its cost
    without output, the floor any function that reads its rows pays."""
    return (
        sessions.bucketed(events, watermark=WATERMARK, buckets=buckets)
        .groupBy("bucket")
        .applyInPandasWithState(
            _drain,
            sessions.OUTPUT_SCHEMA,
            bucketed_state.STATE_SCHEMA,
            "append",
            GroupStateTimeout.EventTimeTimeout,
        )
    )


def sessionize(events: DataFrame, buckets: int) -> DataFrame:
    return sessions.transform(events, watermark=WATERMARK, timeout_ms=TIMEOUT_MS, buckets=buckets)


def page_views(events: DataFrame, buckets: int) -> DataFrame:
    return windows.page_views(events, WATERMARK)


def active_users(events: DataFrame, buckets: int) -> DataFrame:
    return windows.active_users(events, WATERMARK)


VARIANTS: dict[str, Callable[[DataFrame, int], DataFrame]] = {
    "stateless": stateless,
    "passthrough": passthrough,
    "drain": drain,
    "sessions": sessionize,
    "page_views": page_views,
    "active_users": active_users,
}
UPDATE_MODE = ("page_views", "active_users")  # as the pipeline runs them


def run_variant(
    spark: SparkSession, root: Path, folder: Path, variant: str, tag: str, buckets: int
) -> dict:
    frame = VARIANTS[variant](file_stream(spark, EVENT_SCHEMA, folder), buckets)
    mode = "update" if variant in UPDATE_MODE else "append"
    return run_to_noop(frame, root / f"cp-{variant}-{tag}", name=variant, output_mode=mode)


def _short(users: int) -> str:
    for size, suffix in ((1_000_000, "m"), (1000, "k")):
        if users >= size and users % size == 0:
            return f"{users // size}{suffix}"
    return str(users)


def run(
    spark: SparkSession,
    work_dir: Path,
    *,
    rows: int,
    batch_rows: int,
    users: tuple[int, ...] = (10_000, 1_000_000),
    repeat: int = 3,
    buckets: int = BUCKETS,
    seed: int = 7,
    log=print,
) -> dict:
    """Every variant on the input of users[0]; the sessions also on each other users count's
    input (same size, same sessions, other users)."""
    root = work_dir / f"activity-{rows}"
    shutil.rmtree(root, ignore_errors=True)
    began = time.monotonic()
    watermark_ms = duration_ms(WATERMARK)
    inputs, expected = {}, {}
    for count in users:
        log(f"generating {rows:,} activity events over {count:,} users")
        inputs[count] = root / f"input-{count}"
        expected[count] = write_input(inputs[count], rows, count, batch_rows, seed, watermark_ms)
    plan = [(name, users[0]) for name in VARIANTS] + [("sessions", u) for u in users[1:]]

    def run_once(key: tuple[str, int], attempt: str) -> dict:
        name, count = key
        return run_variant(spark, root, inputs[count], name, f"{count}-{attempt}", buckets)

    def check(key: tuple[str, int], result: dict) -> None:
        name, count = key
        if name == "sessions" and result["rows_out"] != expected[count]["closed_sessions"]:
            raise RuntimeError(
                f"sessions emitted {result['rows_out']:,} sessions at {count:,} users, "
                f"the input closes {expected[count]['closed_sessions']:,}"
            )

    results = interleaved(
        plan, repeat, run_once, lambda key: f"{key[0]} ({key[1]:,} users)", log, check
    )
    median = medians(results)
    shutil.rmtree(root, ignore_errors=True)
    u = users[0]
    windows_seconds = sum(
        statistics.median(r["seconds"] for r in results[name, u]) for name in UPDATE_MODE
    )
    windows_rate = statistics.median(r["rows"] for r in results["page_views", u]) / windows_seconds
    sessions_rate = median["sessions", u]
    result = {
        "benchmark": "activity",
        "rows": rows,
        "batch_rows": batch_rows,
        "repeat": repeat,
        "buckets": buckets,
        "users": u,
        "sessions": expected[u]["sessions"],
        "sessions_closed": expected[u]["closed_sessions"],
        "event_time_span_s": expected[u]["event_time_span_s"],
        "sessions_rows_per_s": round(sessions_rate),
        "windows_rows_per_s": round(windows_rate),
        "page_views_rows_per_s": round(median["page_views", u]),
        "active_users_rows_per_s": round(median["active_users", u]),
        "stateless_rows_per_s": round(median["stateless", u]),
        "passthrough_rows_per_s": round(median["passthrough", u]),
        "drain_rows_per_s": round(median["drain", u]),
        "sessions_vs_passthrough": round(sessions_rate / median["passthrough", u], 3),
        "sessions_vs_drain": round(sessions_rate / median["drain", u], 3),
        "sessions_vs_stateless": round(sessions_rate / median["stateless", u], 3),
        "passthrough_vs_stateless": round(median["passthrough", u] / median["stateless", u], 3),
        "windows_vs_stateless": round(windows_rate / median["stateless", u], 3),
    }
    for count in users[1:]:
        result[f"sessions_rows_per_s_{_short(count)}_users"] = round(median["sessions", count])
        result[f"sessions_{_short(count)}_vs_{_short(u)}_users"] = round(
            median["sessions", count] / sessions_rate, 3
        )
    result["seconds"] = round(time.monotonic() - began, 1)
    return result
