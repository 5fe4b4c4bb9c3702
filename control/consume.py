"""`lakehouse kafka ...`: read a topic as a user would, list the topics, and print the broker's
own console consumer command.

The reader is kafka-python's KafkaConsumer without a consumer group (nothing is committed, a
read never moves anyone's offsets), read_committed by default: topics written in
transactions (enriched_activity) then show only what was committed. Every failure a user can
cause or meet (Kafka down, no such topic, no jars) is a KafkaToolError with one sentence.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from lakehouse.process import port_in_use
from lakehouse.settings import Settings

# The console consumer's main class in the kafka-tools jar (what kafka-console-consumer.sh runs).
CONSOLE_CONSUMER_CLASS = "org.apache.kafka.tools.consumer.ConsoleConsumer"
CLIENT_ID = "lakehouse-cli"
BOOTSTRAP_TIMEOUT_MS = 5000
# The longest a poll waits, so the idle timeout is checked (and Ctrl-C seen) often.
POLL_SLICE_S = 1.0


class KafkaToolError(Exception):
    """One sentence for the user; the CLI prints it and exits with code 2."""


@dataclass(frozen=True)
class ConsumeReport:
    topic: str
    messages: int
    reason: str  # "max-messages", "idle", "interrupted" or "output closed"


def unreachable_message(settings: Settings) -> str:
    return f"Kafka is not reachable at {settings.kafka_bootstrap}: start the platform (make up)."


def missing_topic_message(topic: str, existing: list[str]) -> str:
    """One sentence naming the topic and the ones that do exist."""
    if not existing:
        return (
            f"Topic {topic!r} does not exist, and no topic exists yet: `lakehouse up` creates "
            "the platform's topics."
        )
    listed = ", ".join(sorted(existing))
    return (
        f"Topic {topic!r} does not exist; the topics are: {listed} "
        "(`lakehouse kafka topics` lists them with their partitions)."
    )


def consumer_config(settings: Settings, *, read_committed: bool, from_beginning: bool) -> dict:
    """KafkaConsumer settings: no group (no commits), never creating a topic by mistake."""
    return {
        "bootstrap_servers": settings.kafka_bootstrap,
        "client_id": CLIENT_ID,
        "group_id": None,
        "enable_auto_commit": False,
        "isolation_level": "read_committed" if read_committed else "read_uncommitted",
        "auto_offset_reset": "earliest" if from_beginning else "latest",
        "allow_auto_create_topics": False,
        "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
    }


def format_record(key: bytes | None, value: bytes | None, *, keys: bool) -> bytes:
    """One output line: the value as is (a null value is an empty line), after the key and a
    tab with `keys`."""
    line = value or b""
    if keys:
        line = (key or b"") + b"\t" + line
    return line + b"\n"


def _connect(settings: Settings, **config):
    """A KafkaConsumer, or KafkaToolError when the broker does not answer."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    # A failed KafkaConsumer() costs the whole bootstrap timeout (and leaks its I/O thread in
    # kafka-python 3.0): nothing listening is the common case, say so at once.
    if not port_in_use(settings.kafka_host, settings.kafka_port):
        raise KafkaToolError(unreachable_message(settings))
    try:
        return KafkaConsumer(**config)
    except KafkaError:
        raise KafkaToolError(unreachable_message(settings)) from None


def list_topics(settings: Settings) -> dict[str, int]:
    """Topic name -> partition count, internal topics left out."""
    from kafka.errors import KafkaError

    consumer = _connect(
        settings, **consumer_config(settings, read_committed=True, from_beginning=False)
    )
    try:
        return {topic: len(consumer.partitions_for_topic(topic)) for topic in consumer.topics()}
    except KafkaError as error:
        raise KafkaToolError(
            f"Kafka at {settings.kafka_bootstrap} failed to answer ({error})."
        ) from None
    finally:
        consumer.close(autocommit=False)


def consume(
    settings: Settings,
    topic: str,
    out: BinaryIO,
    *,
    from_beginning: bool = False,
    max_messages: int | None = None,
    timeout_s: float = 10.0,
    read_committed: bool = True,
    keys: bool = False,
    on_ready: Callable[[str], None] = lambda _: None,
) -> ConsumeReport:
    """Write the topic's messages to `out`, one line each, until `max_messages` were read,
    `timeout_s` passed without a new one (0: never), Ctrl-C, or `out` is closed.

    `on_ready` gets one sentence once every partition's start offset is known: a message sent
    after it is read even without `from_beginning`.
    """
    from kafka import TopicPartition
    from kafka.errors import KafkaError

    consumer = _connect(
        settings,
        **consumer_config(settings, read_committed=read_committed, from_beginning=from_beginning),
    )
    count, reason = 0, "interrupted"
    try:
        try:
            existing = consumer.topics()
            if topic not in existing:
                raise KafkaToolError(missing_topic_message(topic, list(existing)))
            partitions = [
                TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))
            ]
            consumer.assign(partitions)
            if from_beginning:
                consumer.seek_to_beginning()
            else:
                consumer.seek_to_end()
            for partition in partitions:  # resolve the start offsets now, not at the first poll
                consumer.position(partition)
        except KafkaError as error:
            raise KafkaToolError(
                f"Kafka at {settings.kafka_bootstrap} failed to answer ({error})."
            ) from None
        on_ready(
            f"reading {topic} ({len(partitions)} partitions, "
            f"{'read_committed' if read_committed else 'read_uncommitted'}) "
            f"{'from the beginning' if from_beginning else 'from the end'}; Ctrl-C stops"
        )
        idle_since = time.monotonic()
        while max_messages is None or count < max_messages:
            wait_s = POLL_SLICE_S
            if timeout_s > 0:
                left = idle_since + timeout_s - time.monotonic()
                if left <= 0:
                    reason = "idle"
                    break
                wait_s = min(wait_s, left)
            wanted = None if max_messages is None else max_messages - count
            batch = consumer.poll(timeout_ms=max(1, int(wait_s * 1000)), max_records=wanted)
            if not batch:
                continue
            idle_since = time.monotonic()
            for records in batch.values():
                for record in records:
                    out.write(format_record(record.key, record.value, keys=keys))
                    count += 1
            try:
                out.flush()
            except BrokenPipeError:  # e.g. `| head`
                reason = "output closed"
                break
        else:
            reason = "max-messages"
    except KeyboardInterrupt:
        reason = "interrupted"
    except BrokenPipeError:
        reason = "output closed"
    finally:
        consumer.close(autocommit=False, timeout_ms=2000)
    return ConsumeReport(topic, count, reason)


class TopicReader:
    """A topic's committed values (read_committed) from its beginning; each `read` adds what
    was committed since the last one, so polling a growing topic reads each message once."""

    def __init__(self, settings: Settings, topic: str) -> None:
        from kafka import TopicPartition

        self.topic = topic
        self.values: list[bytes] = []
        self._consumer = _connect(
            settings, **consumer_config(settings, read_committed=True, from_beginning=True)
        )
        found = self._consumer.partitions_for_topic(topic) or ()
        if not found:
            existing = list(self._consumer.topics())
            self.close()
            raise KafkaToolError(missing_topic_message(topic, existing))
        self._partitions = [TopicPartition(topic, p) for p in sorted(found)]
        self._consumer.assign(self._partitions)
        self._consumer.seek_to_beginning(*self._partitions)

    def read(self, timeout_s: float = 300.0) -> list[bytes]:
        """Every value up to the end offsets taken now (for read_committed, the last stable
        offset: nothing of an open transaction)."""
        end = self._consumer.end_offsets(self._partitions)
        deadline = time.monotonic() + timeout_s
        while any(self._consumer.position(p) < end[p] for p in self._partitions):
            if time.monotonic() > deadline:
                raise KafkaToolError(f"{self.topic} was not read to its end in {timeout_s:.0f} s.")
            for records in self._consumer.poll(timeout_ms=1000).values():
                self.values.extend(r.value for r in records)
        return self.values

    def close(self) -> None:
        self._consumer.close(autocommit=False, timeout_ms=2000)


def read_to_end(settings: Settings, topic: str, timeout_s: float = 300.0) -> list[bytes]:
    """Every committed value of the topic, up to its end now."""
    reader = TopicReader(settings, topic)
    try:
        return reader.read(timeout_s)
    finally:
        reader.close()


def summary(report: ConsumeReport) -> str:
    noun = "message" if report.messages == 1 else "messages"
    return f"read {report.messages} {noun} from {report.topic}"


def console_consumer_command(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool = False,
    read_committed: bool = True,
    keys: bool = False,
    max_messages: int | None = None,
    timeout_s: float | None = None,
) -> list[str]:
    """The broker's own console consumer, run from the installed Kafka jars (as infra/kafka.py
    runs the broker): `java -cp '<jars>/kafka/*' ...ConsoleConsumer --bootstrap-server ...`."""
    command = [
        "java",
        "-cp",
        str(settings.jars_dir / "kafka" / "*"),
        CONSOLE_CONSUMER_CLASS,
        "--bootstrap-server",
        settings.kafka_bootstrap,
        "--topic",
        topic,
        "--isolation-level",
        "read_committed" if read_committed else "read_uncommitted",
    ]
    if from_beginning:
        command.append("--from-beginning")
    if keys:
        command += ["--property", "print.key=true"]  # key, a tab, the value
    if max_messages is not None:
        command += ["--max-messages", str(max_messages)]
    if timeout_s:
        command += ["--timeout-ms", str(int(timeout_s * 1000))]
    return command


def console_consumer_problem(settings: Settings) -> str | None:
    """One sentence when the console consumer cannot run here, else None."""
    from lakehouse.java import java_problem

    jars = settings.jars_dir / "kafka"
    if not any(jars.glob("kafka-tools-*.jar")):
        return f"The Kafka jars are not installed in {jars}: run `lakehouse install`."
    return java_problem()


def shell_command(command: list[str]) -> str:
    return shlex.join(command)
