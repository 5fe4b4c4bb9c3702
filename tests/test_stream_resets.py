"""What a stream does when its history is not what it expects: a deleted checkpoint, and
Kafka offsets deleted before the stream read them. Real Kafka, Spark and Delta on S3, with
the market pipeline's bronze query run in this process."""

from __future__ import annotations

import contextlib
import shutil

import psycopg
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from pyspark.errors import StreamingQueryException

from lakehouse.layout import Layout
from lakehouse.pipelines.market import REFERENCE_TOPIC, TRADES_TOPIC
from spark.jobs.market import bronze as market_bronze
from spark.kafka_offsets import is_data_loss
from spark.progress import PostgresProgressListener
from tests.conftest import isolated_layout
from tests.market import START_MS, produce, wait_for

pytestmark = [pytest.mark.services, pytest.mark.spark]

BRONZE_TABLES = ("bronze_trades", "bronze_company_reference", "quarantine_market")


def drain(spark, settings, layout: Layout):
    """Run the bronze query over what Kafka holds now, to the end; returns the query."""
    query = market_bronze.start(spark, settings, layout, trigger={"availableNow": True})
    # The query's own exception is asserted on by the caller.
    with contextlib.suppress(StreamingQueryException):
        query.awaitTermination()
    return query


def bronze_rows(spark, layout: Layout) -> int:
    return sum(
        spark.read.format("delta").load(layout.table(name)).count() for name in BRONZE_TABLES
    )


def bronze_offsets(spark, layout: Layout) -> set[tuple[str, int, int]]:
    """(topic, partition, offset) of every record bronze holds, in all three tables."""
    found: set[tuple[str, int, int]] = set()
    for name in BRONZE_TABLES:
        rows = (
            spark.read.format("delta")
            .load(layout.table(name))
            .select("kafka_topic", "kafka_partition", "kafka_offset")
            .collect()
        )
        found.update((r[0], r[1], r[2]) for r in rows)
    return found


def end_offsets(settings, layout: Layout) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        partitions = [
            TopicPartition(layout.topic(topic), p)
            for topic in (TRADES_TOPIC, REFERENCE_TOPIC)
            for p in consumer.partitions_for_topic(layout.topic(topic))
        ]
        return consumer.end_offsets(partitions)
    finally:
        consumer.close()


def test_a_deleted_checkpoint_loses_no_new_record(spark, platform):
    """A new checkpoint numbers its batches from 0 again. Delta's idempotent writes are keyed
    by the checkpoint's query id too, so they are not taken for the old run's batches."""
    layout = isolated_layout(platform, "market", prefix="reset")
    first = produce(layout, count=300, seed=3, start_ms=START_MS)["total"]
    assert drain(spark, platform, layout).exception() is None
    assert bronze_rows(spark, layout) == first

    shutil.rmtree(layout.checkpoint(market_bronze.QUERY_NAME))
    second = produce(layout, count=200, seed=4, start_ms=START_MS + 3_600_000)["total"]
    new_end = end_offsets(platform, layout)
    assert drain(spark, platform, layout).exception() is None

    # The new checkpoint starts from the earliest offsets: the first records are read again
    # (each keeps its Kafka position, so they can be told apart), and every new one lands.
    assert bronze_rows(spark, layout) == 2 * first + second
    held = bronze_offsets(spark, layout)
    assert {(tp.topic, tp.partition, end - 1) for tp, end in new_end.items() if end} <= held
    assert len(held) == first + second


def test_offsets_deleted_before_the_stream_read_them(spark, platform):
    """Fail by default, with a reason that says so; when set to skip, the skipped offsets are
    counted per partition and input = bronze rows + offsets lost."""
    layout = isolated_layout(platform, "market", prefix="lost")
    first = produce(layout, count=200, seed=5, start_ms=START_MS)["total"]
    assert drain(spark, platform, layout).exception() is None
    read_end = end_offsets(platform, layout)

    # Records the stream has not read, then deleted as retention would (the log start offset
    # moves past them), then newer records.
    second = produce(layout, count=150, seed=6, start_ms=START_MS + 3_600_000)["total"]
    deleted_end = end_offsets(platform, layout)
    admin = KafkaAdminClient(bootstrap_servers=platform.kafka_bootstrap)
    try:
        admin.delete_records(deleted_end)
    finally:
        admin.close()
    third = produce(layout, count=100, seed=7, start_ms=START_MS + 7_200_000)["total"]

    failed = drain(spark, platform, layout)
    assert failed.exception() is not None and is_data_loss(failed.exception())
    assert bronze_rows(spark, layout) == first  # nothing skipped, nothing written

    skipping = platform.model_copy(update={"kafka_fail_on_data_loss": False})
    listener = PostgresProgressListener(skipping, "lost-offsets-test")
    spark.streams.addListener(listener)
    try:
        query = drain(spark, skipping, layout)
    finally:
        spark.streams.removeListener(listener)
    assert query.exception() is None
    expected_lost = {
        f"{tp.topic}[{tp.partition}]": end - read_end[tp]
        for tp, end in deleted_end.items()
        if end > read_end[tp]
    }
    assert sum(expected_lost.values()) == second
    # The listener writes asynchronously, after the batch.
    wait_for(lambda: lost_rows(platform, query.id), 60, "the batch's progress row")
    lost_total, by_partition = lost_rows(platform, query.id)[-1]
    assert lost_total == second
    assert by_partition == expected_lost
    assert bronze_rows(spark, layout) == first + third
    assert first + second + third == bronze_rows(spark, layout) + lost_total


def lost_rows(settings, query_id) -> list[tuple[int, dict]]:
    with psycopg.connect(settings.postgres_dsn()) as conn:
        return conn.execute(
            "SELECT kafka_offsets_lost, kafka_offsets_lost_by_partition FROM stream_progress"
            " WHERE query_id = %s AND kafka_offsets_lost > 0 ORDER BY batch_id",
            (str(query_id),),
        ).fetchall()
