"""applyInPandasWithState over hash buckets of keys, with the state as one Arrow blob per
bucket and an event-time timeout: the kit's stateful operator.

One pandas call costs milliseconds, so one group per key (per user, per order) would
dominate as keys grow. Rows are grouped by a hash bucket of their key instead; the pipeline's
pure step function takes a bucket's state, its new rows and the watermark, and returns the
new state, its output and the next watermark at which it must be called (None when the
bucket holds nothing). The web activity sessions and the order matching use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.streaming.state import GroupState, GroupStateTimeout
from pyspark.sql.types import BinaryType, StructField, StructType

STATE_SCHEMA = StructType([StructField("blob", BinaryType())])


class StepResult(Protocol):
    state: Any
    output: pd.DataFrame
    next_timeout_ms: int | None


@dataclass(frozen=True)
class BucketedStep:
    """A pure step function and its state's serialisation."""

    step: Callable[[Any, Iterable[pd.DataFrame], int], StepResult]  # (state, chunks, watermark)
    empty_state: Callable[[], Any]
    to_bytes: Callable[[Any], bytes]
    from_bytes: Callable[[bytes], Any]


def run_bucket(
    key: tuple,
    chunks: Iterator[pd.DataFrame],
    group_state: GroupState,
    fn: BucketedStep,
    columns: tuple[str, ...],
) -> Iterator[pd.DataFrame]:
    """applyInPandasWithState adapter: state blob <-> the step function <-> timeouts."""
    stored = fn.from_bytes(group_state.get[0]) if group_state.exists else fn.empty_state()
    watermark = group_state.getCurrentWatermarkMs()
    result = fn.step(stored, chunks, watermark)
    if result.next_timeout_ms is None:
        group_state.remove()
    else:
        group_state.update((fn.to_bytes(result.state),))
        # Spark calls back once the watermark is past it (it must not be behind it).
        group_state.setTimeoutTimestamp(max(result.next_timeout_ms, watermark))
    if len(result.output):
        yield result.output[list(columns)]


def passthrough_bucket(
    key: tuple, chunks: Iterator[pd.DataFrame], group_state: GroupState
) -> Iterator[pd.DataFrame]:
    """The same operator with a function that returns its input: the ceiling the benches
    compare a step function with."""
    yield from chunks


def bucketed(
    events: DataFrame, key: str, columns: tuple[str, ...], *, watermark: str, buckets: int
) -> DataFrame:
    """`columns` of the events under the watermark, with `event_time_ms` and `bucket`.
    event_time stays: Spark's event-time timeout needs the watermarked column."""
    return events.withWatermark("event_time", watermark).select(
        *columns,
        "event_time",
        F.unix_millis("event_time").alias("event_time_ms"),
        F.pmod(F.xxhash64(key), F.lit(buckets)).alias("bucket"),
    )


def apply_in_buckets(rows: DataFrame, fn: BucketedStep, output_schema: StructType) -> DataFrame:
    """The step function over the bucketed rows, in append mode with event-time timeouts."""
    return rows.groupBy("bucket").applyInPandasWithState(
        partial(run_bucket, fn=fn, columns=tuple(output_schema.fieldNames())),
        output_schema,
        STATE_SCHEMA,
        "append",
        GroupStateTimeout.EventTimeTimeout,
    )


def pass_through(rows: DataFrame) -> DataFrame:
    """Bucketed rows through the operator with `passthrough_bucket` (the benches' ceiling)."""
    return rows.groupBy("bucket").applyInPandasWithState(
        passthrough_bucket, rows.schema, STATE_SCHEMA, "append", GroupStateTimeout.EventTimeTimeout
    )
