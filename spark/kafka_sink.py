"""Exactly-once output to a Kafka topic: one Kafka transaction per micro-batch.

The records of a batch and the batch's id are committed in the same transaction: the id as
the offset of a consumer group of the sink's own (`send_offsets_to_transaction`). A batch
replayed after a crash first reads that offset back and is skipped if it was committed; a
batch that crashed before its commit is aborted when the restarted driver opens the sink
again (`init_transactions` with the same transactional id fences the old producer and aborts
its open transaction). A consumer with `isolation_level="read_committed"` therefore sees
each record once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import suppress

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from lakehouse.settings import Settings

log = logging.getLogger(__name__)


class TransactionalTopicSink:
    """Writes batches to `topic` under `sink` (a stable name of the query and its
    checkpoint: the transactional id and the ledger's group id)."""

    def __init__(self, settings: Settings, topic: str, sink: str) -> None:
        self.topic = topic
        self.group = f"lakehouse-sink-{sink}"
        # The ledger's offset is kept on partition 0 of the output topic itself.
        self._ledger = TopicPartition(topic, 0)
        self._producer = KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            transactional_id=f"lakehouse-{sink}",
            enable_idempotence=True,
            acks="all",
            linger_ms=20,
            batch_size=256 * 1024,
        )
        self._producer.init_transactions()
        self._consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )

    def last_committed_batch(self) -> int | None:
        offset = self._consumer.committed(self._ledger)
        return None if offset is None else offset - 1

    def write(self, batch_id: int, records: Iterable[tuple[bytes | None, bytes]]) -> int | None:
        """Send the batch's (key, value) records in one transaction; returns how many, or
        None when the ledger says this batch was committed before."""
        last = self.last_committed_batch()
        if last is not None and batch_id <= last:
            log.info(
                "%s: batch %d was committed before (ledger at %d): skipped",
                self.topic,
                batch_id,
                last,
            )
            return None
        self._producer.begin_transaction()
        try:
            sent = 0
            for key, value in records:
                self._producer.send(self.topic, key=key, value=value)
                sent += 1
            self._producer.send_offsets_to_transaction(
                {self._ledger: OffsetAndMetadata(batch_id + 1, "", -1)}, self.group
            )
            self._producer.commit_transaction()
        except BaseException:
            # A fenced or failed producer cannot abort; the next driver's init aborts for it.
            with suppress(KafkaError):
                self._producer.abort_transaction()
            raise
        return sent

    def close(self) -> None:
        self._producer.close()
        self._consumer.close()
