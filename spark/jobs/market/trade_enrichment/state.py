"""The enrichment's state function as plain pandas: no Spark here, so it is unit-tested alone.

One call handles one *bucket* (many symbols) of one micro-batch: rows of the enrichment's union
(`kind` = "trade" or "reference") plus the bucket's state, and the query's event-time
watermark.

Semantics:
- **As-of lookup.** A trade gets the reference (company_name, sector) of its symbol with
  the greatest event time <= the trade's, ties broken by Kafka position (the later message
  wins). This is `pandas.merge_asof(..., direction="backward")`, vectorised over the bucket.
  A trade with no reference at or before its time keeps company_name/sector null.
- **Trades wait for the watermark.** A trade leaves (status "enriched") only once no
  reference at or before its time can still arrive on time, so the answer does not depend
  on arrival order: it equals the as-of join over the full reference history. That is
  the case once `event_time_ms < watermark`, and, when the caller passes the watermark
  delay, already in the batch where `event_time_ms < max event time of the batch - delay`:
  Spark's next watermark is `max(watermark, max event time of the batch - delay)`, and the
  batch's rows of this bucket are among those it takes the maximum of, so every reference
  at or before such a trade arrives late from the next batch on. Most trades therefore
  leave in the batch they arrive in and never touch the state store; only the last
  `delay` of each batch's event time waits for the next one.
- **Deduplication.** A trade whose trade_id equals a held trade's or an earlier row's of the
  same batch is output with status "duplicate" (the first occurrence wins; held rows come
  first). A copy arriving after its original left has the original's event time, below the
  watermark, so it is output as "late": no set of emitted ids is needed.
- **Late rows** (event time below the watermark on arrival) are output, not used: a late
  trade with status "late" (the history it would need may be evicted), a late reference with
  status "late_reference" (it may belong to trades already emitted; using it for some trades
  and not others would make the answer depend on arrival order). In the Spark job, Spark
  itself drops and counts such rows before this function; this keeps the function correct
  on its own.
- **State bound.** State = held trades + per symbol the references with event time >= the
  watermark plus the single latest one below it (the one valid at the watermark). Held
  trades are bounded by rate x watermark delay; references by the update rate x delay plus
  one per symbol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

TRADE_COLUMNS: tuple[str, ...] = (
    "trade_id",
    "symbol",
    "event_time_ms",
    "price",
    "volume",
    "kafka_partition",
    "kafka_offset",
)
REFERENCE_COLUMNS: tuple[str, ...] = ("symbol", "event_time_ms", "company_name", "sector")
INPUT_COLUMNS: tuple[str, ...] = (
    "kind",
    "trade_id",
    "symbol",
    "event_time_ms",
    "price",
    "volume",
    "company_name",
    "sector",
    "kafka_partition",
    "kafka_offset",
)
OUTPUT_COLUMNS: tuple[str, ...] = (*INPUT_COLUMNS[1:], "status")
FLUSH_WATERMARK_MS = 2**62  # a watermark past every event: emits everything held

# volume is float64 in and out: references carry none (the job casts it for silver).
_INPUT_DTYPES = {
    "kind": object,
    "trade_id": object,
    "symbol": object,
    "event_time_ms": "int64",
    "price": "float64",
    "volume": "float64",
    "company_name": object,
    "sector": object,
    "kafka_partition": "int64",
    "kafka_offset": "int64",
}
_ARROW_TYPES = {object: pa.string(), "int64": pa.int64(), "float64": pa.float64()}
_STATE_SCHEMA = pa.schema([(c, _ARROW_TYPES[t]) for c, t in _INPUT_DTYPES.items()])
_REFERENCE_ORDER = ["symbol", "event_time_ms", "kafka_partition", "kafka_offset"]


_REFERENCE_STATE_COLUMNS = [*REFERENCE_COLUMNS, "kafka_partition", "kafka_offset"]


@dataclass
class BucketState:
    """Held trades (TRADE_COLUMNS) and kept references (REFERENCE_COLUMNS + Kafka position).

    Kept apart rather than as one union frame: concatenating frames with all-null object
    columns sends pandas down a per-element path that cost most of a call's time."""

    trades: pd.DataFrame
    references: pd.DataFrame

    def __len__(self) -> int:
        return len(self.trades) + len(self.references)


@dataclass
class StepResult:
    output: pd.DataFrame  # OUTPUT_COLUMNS
    state: BucketState
    next_timeout_ms: int | None  # oldest held trade's event time, None when none is held


def empty_input() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _INPUT_DTYPES.items()})


def empty_state() -> BucketState:
    empty = empty_input()
    return BucketState(empty[list(TRADE_COLUMNS)], empty[_REFERENCE_STATE_COLUMNS])


def _split(chunks: Sequence[pd.DataFrame]) -> BucketState:
    """Union rows (INPUT_COLUMNS) -> trades and references, each with its own columns."""
    trades, references = [], []
    for chunk in chunks:
        is_trade = (chunk["kind"] == "trade").to_numpy()
        trades.append(chunk.loc[is_trade, list(TRADE_COLUMNS)])
        references.append(chunk.loc[~is_trade, _REFERENCE_STATE_COLUMNS])
    empty = empty_state()
    return BucketState(
        _concat([empty.trades, *trades]).astype(_typed(TRADE_COLUMNS), copy=False),
        _concat([empty.references, *references]).astype(
            _typed(_REFERENCE_STATE_COLUMNS), copy=False
        ),
    )


def _typed(columns: Sequence[str]) -> dict[str, object]:
    return {c: _INPUT_DTYPES[c] for c in columns}


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    non_empty = [f for f in frames if len(f)]
    if len(non_empty) == 1:
        return non_empty[0]
    return pd.concat(non_empty or frames[:1], ignore_index=True)


def _with_status(rows: pd.DataFrame, status: str) -> pd.DataFrame:
    out = rows.reindex(columns=list(OUTPUT_COLUMNS[:-1]))
    out["status"] = status
    return out


def _as_of(trades: pd.DataFrame, references: pd.DataFrame) -> pd.DataFrame:
    """Each trade with the latest reference of its symbol at or before its event time."""
    if trades.empty:
        return trades.assign(company_name=pd.Series(dtype=object), sector=pd.Series(dtype=object))
    left = trades.sort_values("event_time_ms", kind="stable")
    # merge_asof wants `on` sorted; among equal times the last row wins, hence the
    # Kafka-position order inside each time.
    right = references.sort_values(
        ["event_time_ms", "kafka_partition", "kafka_offset"], kind="stable"
    )[list(REFERENCE_COLUMNS)]
    return pd.merge_asof(
        left,
        right,
        on="event_time_ms",
        by="symbol",
        direction="backward",
        allow_exact_matches=True,
    )


def _kept_references(references: pd.DataFrame, watermark_ms: int) -> pd.DataFrame:
    """Per symbol: every reference at or after the watermark and the latest one below it."""
    ordered = references.sort_values(_REFERENCE_ORDER, kind="stable")
    below = ordered["event_time_ms"].to_numpy() < watermark_ms
    latest_below = ordered[below].groupby("symbol", sort=False).tail(1)
    return _concat([latest_below, ordered[~below]])


def release_bound(incoming: BucketState, watermark_ms: int, delay_ms: int | None) -> int:
    """Trades with event time below this leave now: the watermark, or, with the delay known,
    the least watermark the next batch can have (see the module's docstring)."""
    if delay_ms is None:
        return watermark_ms
    newest = max(
        (int(f["event_time_ms"].max()) for f in (incoming.trades, incoming.references) if len(f)),
        default=None,
    )
    return watermark_ms if newest is None else max(watermark_ms, newest - delay_ms)


def step(
    state: BucketState,
    batch: pd.DataFrame | Sequence[pd.DataFrame],
    watermark_ms: int,
    delay_ms: int | None = None,
) -> StepResult:
    """One micro-batch of one bucket (one frame or Spark's chunks of INPUT_COLUMNS).

    `delay_ms` is the query's watermark delay; without it trades wait for the watermark
    itself (a batch later). Does not modify its arguments."""
    incoming = _split([batch] if isinstance(batch, pd.DataFrame) else batch)
    late_refs = incoming.references["event_time_ms"].to_numpy() < watermark_ms
    references = _concat([state.references, incoming.references[~late_refs]])

    arrived_late = incoming.trades["event_time_ms"].to_numpy() < watermark_ms
    candidates = _concat([state.trades, incoming.trades[~arrived_late]])
    duplicate = candidates["trade_id"].duplicated(keep="first").to_numpy()
    unique = candidates[~duplicate]
    ready = unique["event_time_ms"].to_numpy() < release_bound(incoming, watermark_ms, delay_ms)
    held = unique[~ready]

    parts = [
        _with_status(_as_of(unique[ready], references), "enriched"),
        _with_status(candidates[duplicate], "duplicate"),
        _with_status(incoming.trades[arrived_late], "late"),
        _with_status(incoming.references[late_refs], "late_reference"),
    ]
    output = _concat([part for part in parts if len(part)] or parts[:1])
    next_timeout = int(held["event_time_ms"].min()) if len(held) else None
    return StepResult(
        output, BucketState(held, _kept_references(references, watermark_ms)), next_timeout
    )


def state_to_bytes(state: BucketState) -> bytes:
    """One Arrow IPC stream: the union layout, `kind` telling trades from references."""
    tables = []
    for kind, frame in (("trade", state.trades), ("reference", state.references)):
        columns = {
            name: (
                pa.array(
                    frame[name].to_numpy(), type=_STATE_SCHEMA.field(name).type, from_pandas=True
                )
                if name in frame.columns
                else pa.nulls(len(frame), _STATE_SCHEMA.field(name).type)
            )
            for name in INPUT_COLUMNS
            if name != "kind"
        }
        kinds = pa.array([kind] * len(frame), pa.string())
        tables.append(pa.table({"kind": kinds, **columns}, schema=_STATE_SCHEMA))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, _STATE_SCHEMA) as writer:
        for table in tables:
            writer.write_table(table)
    return sink.getvalue().to_pybytes()


def state_from_bytes(blob: bytes) -> BucketState:
    table = pa.ipc.open_stream(pa.py_buffer(blob)).read_all()
    is_trade = pc.equal(table["kind"], "trade")
    trades = table.filter(is_trade).select(list(TRADE_COLUMNS)).to_pandas()
    references = table.filter(pc.invert(is_trade)).select(_REFERENCE_STATE_COLUMNS).to_pandas()
    return BucketState(
        trades.astype(_typed(TRADE_COLUMNS), copy=False),
        references.astype(_typed(_REFERENCE_STATE_COLUMNS), copy=False),
    )


def replay(batch: pd.DataFrame) -> pd.DataFrame:
    """A bucket's rows re-read from bronze, enriched as the stream would have: every row
    treated as on time, then every trade released. Rows must come in Kafka order (the
    first copy of a trade id wins, as in the stream). Output: OUTPUT_COLUMNS, statuses
    "enriched" and "duplicate"."""
    arrived = step(empty_state(), batch, -FLUSH_WATERMARK_MS)
    released = step(arrived.state, empty_input(), FLUSH_WATERMARK_MS)
    return _concat([arrived.output, released.output])
