"""Kafka offsets a stream could not read because Kafka no longer held them.

By default a Kafka source fails when retention (or a deleted topic) removed offsets it had
not read yet (`failOnDataLoss`): the driver stops with one sentence saying so, and nothing
is skipped silently. A user who prefers to go on sets `LAKEHOUSE_KAFKA_FAIL_ON_DATA_LOSS=false`;
then every micro-batch counts, per partition, the offsets between where it starts (the end of
the previous batch, from the checkpoint's offset log) and the earliest offset Kafka still has.
The count is taken before the batch reads Kafka, so it never includes a record the batch did
read; stream_progress, the health page and the supervisor's log show it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from lakehouse.settings import Settings

log = logging.getLogger(__name__)

Partition = tuple[str, int]  # (topic, partition)
DATA_LOSS_MARKERS = ("failOnDataLoss", "Some data may have been lost")


def parse_kafka_offsets(offsets: str | dict | None) -> dict[Partition, int] | None:
    """{(topic, partition): offset} from a Kafka source's offset JSON ({"topic": {"0": 12}}),
    as text or parsed (a progress's JSON holds it parsed); None for other sources (a Delta
    source's offset is one flat object, and Spark writes "None" when it has none)."""
    try:
        parsed = json.loads(offsets) if isinstance(offsets, str) else offsets
    except ValueError:
        return None
    if not isinstance(parsed, dict) or not parsed:
        return None
    offsets = {}
    for topic, partitions in parsed.items():
        if not isinstance(partitions, dict):
            return None
        for partition, offset in partitions.items():
            if not isinstance(offset, int) or not str(partition).lstrip("-").isdigit():
                return None
            offsets[(topic, int(partition))] = offset
    return offsets


def logged_kafka_offsets(checkpoint: str, batch_id: int) -> dict[Partition, int] | None:
    """The Kafka end offsets the checkpoint's offset log holds for a batch (None: no such
    batch, or no Kafka source). Lines: the version, the batch metadata, one per source."""
    path = Path(checkpoint.removeprefix("file:")) / "offsets" / str(batch_id)
    if not path.exists():
        return None
    for line in path.read_text().splitlines()[2:]:
        offsets = parse_kafka_offsets(line)
        if offsets is not None:
            return offsets
    return None


def offsets_lost(
    start: dict[Partition, int], end: dict[Partition, int], earliest: dict[Partition, int]
) -> dict[Partition, int]:
    """Per partition, the offsets of [start, end) below the earliest one Kafka still holds.
    A partition new in this batch starts at its earliest offset: nothing lost. Pure."""
    lost = {}
    for partition, stop in end.items():
        begin = start.get(partition)
        if begin is None or partition not in earliest:
            continue
        missing = min(earliest[partition], stop) - begin
        if missing > 0:
            lost[partition] = missing
    return lost


@cache
def _consumer(bootstrap: str):
    from kafka import KafkaConsumer

    return KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)


def earliest_offsets(settings: Settings, partitions: list[Partition]) -> dict[Partition, int]:
    from kafka import TopicPartition

    found = _consumer(settings.kafka_bootstrap).beginning_offsets(
        [TopicPartition(topic, partition) for topic, partition in partitions], timeout_ms=30_000
    )
    return {(tp.topic, tp.partition): offset for tp, offset in found.items()}


def latest_offsets(settings: Settings, partitions: list[Partition]) -> dict[Partition, int]:
    from kafka import TopicPartition

    found = _consumer(settings.kafka_bootstrap).end_offsets(
        [TopicPartition(topic, partition) for topic, partition in partitions]
    )
    return {(tp.topic, tp.partition): offset for tp, offset in found.items()}


def committed_kafka_offsets(checkpoints: Iterable[Path]) -> dict[str, dict[Partition, int]]:
    """Query (its checkpoint folder's name) -> the Kafka end offsets of its newest committed
    batch, for the checkpoints whose source is Kafka and that committed a batch."""
    from spark.checkpoints import last_committed_batch

    committed = {}
    for checkpoint in checkpoints:
        batch = last_committed_batch(checkpoint)
        offsets = logged_kafka_offsets(str(checkpoint), batch) if batch is not None else None
        if offsets:
            committed[checkpoint.name] = offsets
    return committed


def kafka_lag(settings: Settings, committed: dict[str, dict[Partition, int]]) -> dict[str, int]:
    """Query -> the messages its topics hold beyond its newest committed batch."""
    wanted = sorted({partition for offsets in committed.values() for partition in offsets})
    ends = latest_offsets(settings, wanted) if wanted else {}
    return {
        query: sum(max(ends[partition] - done, 0) for partition, done in offsets.items())
        for query, offsets in committed.items()
    }


def count_lost_offsets(settings: Settings, query: str, checkpoint: str, batch_id: int) -> None:
    """Called at the start of a Kafka query's foreachBatch, before the batch reads Kafka:
    counts what the batch will skip (only when the platform is set to skip rather than
    fail) for stream_progress, and says so in the driver's log."""
    if settings.kafka_fail_on_data_loss or batch_id == 0:
        return  # batch 0 starts at the earliest offsets
    start = logged_kafka_offsets(checkpoint, batch_id - 1)
    end = logged_kafka_offsets(checkpoint, batch_id)
    if not start or not end:
        return
    lost = offsets_lost(start, end, earliest_offsets(settings, sorted(end)))
    from spark.progress import record_lost_offsets

    record_lost_offsets(query, batch_id, lost)
    if lost:
        where = ", ".join(f"{t}[{p}]: {n}" for (t, p), n in sorted(lost.items()))
        log.warning(
            "%s batch %d skips %d Kafka offsets that Kafka no longer holds (%s): "
            "retention deleted them before the stream read them",
            query,
            batch_id,
            sum(lost.values()),
            where,
        )


def is_data_loss(error: object) -> bool:
    """True for the error a Kafka source raises when offsets it needs are gone."""
    text = str(error)
    return any(marker in text for marker in DATA_LOSS_MARKERS)
