"""Benchmark of the market producer: events/s sent to Kafka by one process.

Baseline, same run: the simulator generating the same messages without sending them, which
is the most a sender on top of it could reach. Both use the same seed, so the messages are
identical. The sent figure counts the time until the last message is acknowledged (flush),
and the topics' end offsets must add up to what was sent.
"""

from __future__ import annotations

import itertools
import time
import uuid

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from lakehouse.settings import Settings
from producers.market import MarketSimulator, SendReport, open_producer, send_all

START_MS = 1_767_225_600_000


def _end_offsets(settings: Settings, topics: list[str]) -> int:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def run(settings: Settings, *, count: int, symbols: int = 500, seed: int = 7, log=print) -> dict:
    topics = {kind: f"bench-{kind}-{uuid.uuid4().hex[:8]}" for kind in ("trades", "references")}
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        partitions = settings.kafka_default_partitions
        admin.create_topics(
            {name: {"num_partitions": partitions} for name in topics.values()},
            wait_for_metadata=True,
        )

        log(f"generating {count:,} messages over {symbols} symbols (no sending)")
        began = time.perf_counter()
        generated = MarketSimulator(symbols=symbols, seed=seed).messages(START_MS)
        for _ in itertools.islice(generated, count):
            pass
        generate_s = time.perf_counter() - began

        log(f"sending {count:,} messages")
        producer = open_producer(settings.kafka_bootstrap)
        report = SendReport()
        began = time.perf_counter()
        try:
            messages = MarketSimulator(symbols=symbols, seed=seed).messages(START_MS)
            send_all(producer, messages, topics, report, count=count)
            send_s = time.perf_counter() - began
        finally:
            producer.close()
        in_kafka = _end_offsets(settings, list(topics.values()))
    finally:
        admin.delete_topics(list(topics.values()))
        admin.close()
    sent = sum(report.counts.values())
    if not sent == count == in_kafka:
        raise RuntimeError(f"sent {sent}, Kafka holds {in_kafka}, asked for {count}")
    return {
        "benchmark": "producer",
        "count": count,
        "symbols": symbols,
        "partitions": partitions,
        "producer_events_per_s": round(count / send_s),
        "generate_events_per_s": round(count / generate_s),
        "producer_vs_generate": round(generate_s / send_s, 3),
        "send_s": round(send_s, 2),
        "generate_s": round(generate_s, 2),
    }
