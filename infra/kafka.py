"""The embedded Kafka 4.1 broker: one JVM in KRaft mode, broker and controller combined.

The jars come from Maven Central (infra/maven/kafka.pom.xml), so no Kafka distribution or
shell scripts are needed: `kafka.tools.StorageTool` formats the log folder once and
`kafka.Kafka` runs the server in the foreground. The quorum is static
(`controller.quorum.voters`, formatted without `--standalone`): the controller's address then
lives in server.properties, rewritten on every start, rather than in the metadata log, so a
changed port takes effect on the next start.
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError

from infra.base import Service, ServiceError
from lakehouse.java import java_problem
from lakehouse.process import port_in_use
from lakehouse.registry import load_registry

_LOG4J2 = """\
status = warn
# Kafka's own shutdown hook logs while the broker closes; log4j's hook would cut that off.
shutdownHook = disable
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
# one line per request at INFO would drown everything else
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


def _new_cluster_id() -> str:
    # Kafka's Uuid format: 16 random bytes, base64url without padding; it rejects a leading "-".
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaService(Service):
    name = "kafka"
    start_timeout_s = 60.0

    @property
    def _config(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def _log4j2(self) -> Path:
        return self.data_dir / "log4j2.properties"

    @property
    def _log_dir(self) -> Path:
        return self.data_dir / "kraft-combined-logs"

    @property
    def _classpath(self) -> str:
        return str(self.settings.jars_dir / "kafka" / "*")

    def ports(self) -> dict[str, int]:
        s = self.settings
        return {"kafka_port": s.kafka_port, "kafka_controller_port": s.kafka_controller_port}

    def url(self) -> str:
        return self.settings.kafka_bootstrap

    def _server_properties(self) -> str:
        s = self.settings
        broker = f"{s.bind_host}:{s.kafka_port}"
        controller = f"{s.bind_host}:{s.kafka_controller_port}"
        props = {
            "process.roles": "broker,controller",
            "node.id": 1,
            "controller.quorum.voters": f"1@{controller}",
            "listeners": f"PLAINTEXT://{broker},CONTROLLER://{controller}",
            "advertised.listeners": f"PLAINTEXT://{s.kafka_bootstrap}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": self._log_dir,
            # topics come from lakehouse.registry; a typo must fail, not create a topic
            "auto.create.topics.enable": "false",
            "num.partitions": s.kafka_default_partitions,
            "default.replication.factor": 1,
            "min.insync.replicas": 1,
            "offsets.topic.replication.factor": 1,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            # the defaults (50 each) size a cluster, not a laptop
            "offsets.topic.num.partitions": 10,
            "transaction.state.log.num.partitions": 10,
            "group.initial.rebalance.delay.ms": 0,
            "num.network.threads": 2,
            "num.io.threads": 4,
            "num.recovery.threads.per.data.dir": 1,
            "log.retention.hours": 168,
        }
        return "".join(f"{key}={value}\n" for key, value in props.items())

    def prepare(self) -> None:
        problem = java_problem()
        if problem:
            raise ServiceError(problem)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._config.write_text(self._server_properties())
        self._log4j2.write_text(_LOG4J2)
        if (self._log_dir / "meta.properties").exists():
            return
        id_file = self.data_dir / "cluster.id"
        if not id_file.exists():
            id_file.write_text(_new_cluster_id() + "\n")
        result = subprocess.run(
            [
                "java",
                f"-Dlog4j2.configurationFile={self._log4j2}",
                "-cp",
                self._classpath,
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id",
                id_file.read_text().strip(),
                "--config",
                str(self._config),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            raise ServiceError(f"Formatting Kafka storage in {self._log_dir} failed:\n{tail}")

    def command(self) -> list[str]:
        return [
            "java",
            "-Xms256m",
            "-Xmx1g",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            # a broker that ran out of heap is broken; let the supervisor see it die
            "-XX:+ExitOnOutOfMemoryError",
            f"-XX:ErrorFile={self.settings.logs_dir / 'kafka-hs_err_%p.log'}",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self._log4j2}",
            "-cp",
            self._classpath,
            "kafka.Kafka",
            str(self._config),
        ]

    @contextmanager
    def _admin(self, timeout_ms: int = 3000) -> Iterator[KafkaAdminClient]:
        admin = KafkaAdminClient(
            bootstrap_servers=self.settings.kafka_bootstrap,
            client_id="lakehouse-platform",
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
        )
        try:
            yield admin
        finally:
            admin.close()

    def is_healthy(self) -> bool:
        s = self.settings
        # A failed KafkaAdminClient() leaks its I/O thread (kafka-python 3.0): skip the
        # attempt while nothing listens, which is most of a start.
        if not port_in_use(s.kafka_host, s.kafka_port):
            return False
        try:
            with self._admin() as admin:
                return bool(admin.describe_cluster().get("brokers"))
        except Exception:
            return False

    def after_start(self) -> None:
        s = self.settings
        with self._admin(timeout_ms=30000) as admin:
            existing = set(admin.list_topics())
            for topic in load_registry(self.settings).topics:
                if topic.name in existing:
                    continue
                spec = {
                    "num_partitions": topic.partitions or s.kafka_default_partitions,
                    "replication_factor": 1,
                    "configs": {"retention.ms": str(topic.retention_ms)},
                }
                # another `up` may have created it since list_topics
                with suppress(TopicAlreadyExistsError):
                    admin.create_topics({topic.name: spec}, wait_for_metadata=True)
