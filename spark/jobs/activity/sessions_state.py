"""The sessionization's state function as plain pandas/pyarrow: no Spark here, so it is
unit-tested alone.

One call handles one *bucket* (many users) of one micro-batch: the bucket's new activity
events (INPUT_COLUMNS, in one or several pandas chunks, possibly none), the bucket's open
sessions as state, the query's event-time watermark and the session timeout.

Semantics:
- **A session** is one (user_id, session_id). Its state: start_ms (earliest event time seen),
  last_ms (latest event time seen), end_ms (time of its session_end event, the latest if
  several, null until one is seen), event_count (every event, session_start and session_end
  included) and pages_viewed (page_view events only).
- **Merging.** Each of those is a min, a max or a sum, so merging is order-free: the new rows
  are stacked under the state rows, each row a one-event partial aggregate of its session, and
  one hash group-by over (user_id, session_id) folds them. The result depends only on which
  events were merged, not on how they were split into calls or ordered within one. Cost:
  O(state + rows) per call, no per-row Python.
- **Closing.** After merging, on every call (with data or a timeout call), a session whose
  threshold is strictly below the watermark W closes and leaves the state as one output row:
  - with a session_end seen: threshold = max(end_ms, last_ms); end_reason "end_event",
    session_end_ms = end_ms;
  - without: threshold = last_ms + timeout_ms; end_reason "timeout", session_end_ms =
    last_ms (the last event seen).
  "Strictly" is Spark's own rule for event-time timeouts: a group's timeout fires once the
  watermark is greater than its timeout timestamp.
- **Why batching does not change the answer.** Take a session whose events are spaced at
  most timeout_ms apart in event time and none of whose events comes after a session_end of
  it. Suppose a call with watermark W closes it while one of its events is still to come, and
  let e be the earliest such event. It reaches the function in a later call, whose watermark
  is at least W (watermarks never move back), and it is not behind that watermark (Spark
  drops those rows before the function), so e > W > threshold. If a session_end was merged,
  e > threshold >= that session_end: an event after the end, excluded above. If none was,
  every event earlier than e was merged (e is the earliest missing one), so the one just
  before e is at most last_ms and e - it > timeout_ms: a gap excluded above. So a session
  closes only with all its events merged, and then its aggregate and threshold are those of
  all its events taken at once. It closes in the first call whose watermark passes that
  threshold, and there is one in every micro-batch whose watermark passes it: next_timeout_ms
  (the bucket's smallest threshold) makes Spark call the bucket then if no data does. Hence,
  after a micro-batch with watermark W, the sessions output so far are exactly those with
  threshold < W, each with the values of a single group-by over all its events, however the
  events were split into batches or ordered.
  A session that breaks the spacing (a gap longer than the timeout, or events after its
  session_end) can come out in several rows, each a later piece with a later
  session_start_ms, depending on timing: the serving table's key (user_id, session_id,
  session_start) keeps them apart.
- **Late rows.** Every row passed in is merged, whatever its event time: in the Spark job,
  with an event-time timeout, Spark drops rows at or behind the watermark before the
  function. (Passed in anyway, a row of a still-open session just joins it; one of a closed
  session starts a new piece.)

The Spark adapter, per call (`state` holding one binary column with the blob):

    watermark_ms = group_state.getCurrentWatermarkMs()
    state = state_from_bytes(group_state.get[0]) if group_state.exists else empty_state()
    result = step(state, chunks, watermark_ms, timeout_ms)
    if result.next_timeout_ms is None:
        group_state.remove()
    else:
        group_state.update((state_to_bytes(result.state),))
        group_state.setTimeoutTimestamp(result.next_timeout_ms)
    yield result.output

Pass next_timeout_ms unchanged: it is the smallest threshold itself (Spark fires when the
watermark exceeds it, exactly when the first open session must close; adding anything
would close sessions later than the rule says). It is never below the current watermark
(an open session's threshold is >= W, else it would have closed), which Spark's
setTimeoutTimestamp requires, and it is positive for epoch-millisecond event times.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

INPUT_COLUMNS: tuple[str, ...] = ("user_id", "session_id", "event_type", "event_time_ms")
KEY_COLUMNS: tuple[str, ...] = ("user_id", "session_id")
STATE_COLUMNS: tuple[str, ...] = (
    *KEY_COLUMNS,
    "start_ms",
    "last_ms",
    "end_ms",
    "event_count",
    "pages_viewed",
)
OUTPUT_COLUMNS: tuple[str, ...] = (
    *KEY_COLUMNS,
    "session_start_ms",
    "session_end_ms",
    "duration_ms",
    "event_count",
    "pages_viewed",
    "end_reason",
)
SESSION_END = "session_end"
PAGE_VIEW = "page_view"
END_EVENT = "end_event"  # end_reason of a session closed by its session_end
TIMEOUT = "timeout"  # end_reason of a session closed by the timeout
FLUSH_WATERMARK_MS = 2**62  # a watermark past every threshold: closes every open session

_INPUT_DTYPES = {
    "user_id": object,
    "session_id": object,
    "event_type": object,
    "event_time_ms": "int64",
}
_OUTPUT_DTYPES = {
    c: (object if c in (*KEY_COLUMNS, "end_reason") else "int64") for c in OUTPUT_COLUMNS
}
_INPUT_SCHEMA = pa.schema(
    [(c, pa.string() if t is object else pa.int64()) for c, t in _INPUT_DTYPES.items()]
)
_STATE_SCHEMA = pa.schema(
    [(c, pa.string() if c in KEY_COLUMNS else pa.int64()) for c in STATE_COLUMNS]
)
_AGGREGATIONS = [
    ("start_ms", "min"),
    ("last_ms", "max"),
    ("end_ms", "max"),  # nulls skipped: null while no session_end is in the group
    ("event_count", "sum"),
    ("pages_viewed", "sum"),
]


@dataclass
class StepResult:
    state: pa.Table  # the sessions still open (STATE_COLUMNS)
    output: pd.DataFrame  # the sessions closed by this call (OUTPUT_COLUMNS)
    next_timeout_ms: int | None  # smallest closing threshold of an open one; None if none


def empty_input() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _INPUT_DTYPES.items()})


def empty_output() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _OUTPUT_DTYPES.items()})


def empty_state() -> pa.Table:
    return _STATE_SCHEMA.empty_table()


def _partials(frames: Iterable[pd.DataFrame]) -> pa.Table | None:
    """Input rows -> one-event partial aggregates (STATE_COLUMNS); None without rows."""
    tables = [
        pa.Table.from_pandas(frame, schema=_INPUT_SCHEMA, preserve_index=False)
        for frame in frames
        if len(frame)
    ]
    if not tables:
        return None
    rows = pa.concat_tables(tables)
    time = rows["event_time_ms"]
    is_end = pc.fill_null(pc.equal(rows["event_type"], SESSION_END), False)
    is_page = pc.fill_null(pc.equal(rows["event_type"], PAGE_VIEW), False)
    return pa.table(
        [
            rows["user_id"],
            rows["session_id"],
            time,
            time,
            pc.if_else(is_end, time, pa.scalar(None, pa.int64())),
            pa.array(np.ones(rows.num_rows, dtype=np.int64)),
            pc.cast(is_page, pa.int64()),
        ],
        schema=_STATE_SCHEMA,
    )


def _merge(state: pa.Table, partials: pa.Table) -> pa.Table:
    """State rows and partials re-aggregated: one row per (user_id, session_id)."""
    grouped = (
        pa.concat_tables([state, partials])
        .group_by(list(KEY_COLUMNS), use_threads=False)
        .aggregate(_AGGREGATIONS)
    )
    columns = [*KEY_COLUMNS, *(f"{column}_{how}" for column, how in _AGGREGATIONS)]
    return grouped.select(columns).rename_columns(list(STATE_COLUMNS)).cast(_STATE_SCHEMA)


def thresholds(state: pa.Table, timeout_ms: int) -> pa.ChunkedArray:
    """Per open session, the watermark it closes beyond (it closes once W > threshold)."""
    end, last = state["end_ms"], state["last_ms"]
    return pc.if_else(
        pc.is_valid(end),
        pc.max_element_wise(end, last),
        pc.add(last, pa.scalar(timeout_ms, pa.int64())),
    )


def _output(closed: pa.Table) -> pd.DataFrame:
    if closed.num_rows == 0:
        return empty_output()
    ended = pc.is_valid(closed["end_ms"])
    session_end = pc.coalesce(closed["end_ms"], closed["last_ms"])
    table = pa.table(
        {
            "user_id": closed["user_id"],
            "session_id": closed["session_id"],
            "session_start_ms": closed["start_ms"],
            "session_end_ms": session_end,
            "duration_ms": pc.subtract(session_end, closed["start_ms"]),
            "event_count": closed["event_count"],
            "pages_viewed": closed["pages_viewed"],
            "end_reason": pc.if_else(ended, END_EVENT, TIMEOUT),
        }
    )
    return table.to_pandas().astype(_OUTPUT_DTYPES, copy=False)


def step(
    state: pa.Table,
    chunks: pd.DataFrame | Iterable[pd.DataFrame],
    watermark_ms: int,
    timeout_ms: int,
) -> StepResult:
    """One micro-batch of one bucket: merge `chunks` (INPUT_COLUMNS; one frame, Spark's
    iterator of chunks, or nothing for a timeout call) into `state`, then close every session
    whose threshold is below `watermark_ms`. Does not modify its arguments."""
    partials = _partials([chunks] if isinstance(chunks, pd.DataFrame) else chunks)
    sessions = state if partials is None else _merge(state, partials)
    threshold = thresholds(sessions, timeout_ms)
    closing = pc.less(threshold, pa.scalar(watermark_ms, pa.int64()))
    staying = pc.invert(closing)
    next_timeout = pc.min(threshold.filter(staying)).as_py()
    return StepResult(sessions.filter(staying), _output(sessions.filter(closing)), next_timeout)


def state_to_bytes(state: pa.Table) -> bytes:
    """The open sessions as one Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, _STATE_SCHEMA) as writer:
        writer.write_table(state.cast(_STATE_SCHEMA))
    return sink.getvalue().to_pybytes()


def state_from_bytes(blob: bytes) -> pa.Table:
    table = pa.ipc.open_stream(pa.py_buffer(blob)).read_all()
    if not table.schema.equals(_STATE_SCHEMA):
        raise ValueError(f"not a sessions state: {table.schema}")
    return table
