"""The compose deployment (docker-compose.yml) against the embedded one, without Docker.

Both deployments run the same code configured by the same LAKEHOUSE_* keys; these tests
keep the compose file from drifting away from lakehouse.settings and control.platform,
and from carrying a credential. Only test_docker_compose_config_accepts_the_file needs
`docker compose` (it skips without it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import yaml

from lakehouse.settings import PROJECT_ROOT, Settings

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
DOCKERFILE = PROJECT_ROOT / "infra" / "compose" / "Dockerfile"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
SHARED_ENV = "x-lakehouse-env"

# Embedded service name -> compose service name, where they differ.
EMBEDDED_TO_COMPOSE = {"s3": "minio"}
# The services that run this project's code, all from the one image.
PYTHON_SERVICES = (
    "spark-master",
    "spark-worker",
    "airflow",
    "dashboard",
    "demo-feed",
    "activity-feed",
    "orders-feed",
)
# Compose service -> (Settings field holding the embedded port, port inside the container):
# the host port must be the embedded default, so URLs are the same in both deployments.
PUBLISHED_PORTS = {
    "kafka": ("kafka_port", 19092),
    "minio": ("s3_port", 9000),
    "postgres": ("postgres_port", 5432),
    "mongo": ("mongo_port", 27017),
    "airflow": ("airflow_port", 18080),
    "dashboard": ("dashboard_port", 18501),
    "spark-master": ("spark_master_ui_port", 18090),
}
SECRET_SUFFIXES = ("_PASSWORD", "_SECRET_KEY", "_ACCESS_KEY")
SECRET_KEYS = {"MINIO_ROOT_USER"}  # MinIO's name for the S3 access key
# A bare reference, or one that fails with a message; never one with a default value.
SECRET_REFERENCE = re.compile(r"\$\{[A-Z_][A-Z0-9_]*(:?\?[^}]*)?\}")
REQUIRED_REFERENCE = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*):\?[^}]+\}")
URL_PASSWORD = re.compile(r"://[^/\s:@]+:(?P<password>[^@\s]+)@")
LAKEHOUSE_VARIABLE = re.compile(r"\bLAKEHOUSE_[A-Z0-9_]+")
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def secret_fields() -> list[str]:
    """Settings fields that hold a credential, e.g. s3_secret_key, postgres_password."""
    return [name for name in Settings.model_fields if name.upper().endswith(SECRET_SUFFIXES)]


def fake_credentials() -> dict[str, str]:
    return {
        f"LAKEHOUSE_{name.upper()}": f"test-{name.replace('_', '-')}" for name in secret_fields()
    }


def interpolate(value: Any, variables: Mapping[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error} on one value ($$ is a $)."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        current = variables.get(name)
        unset = current is None or (current == "" and op is not None and op.startswith(":"))
        if op in (":-", "-") and unset:
            return arg
        if op in (":?", "?") and unset:
            raise KeyError(f"{name}: {arg}")
        return current or ""

    parts = str(value).split("$$")
    return "$".join(INTERPOLATION.sub(substitute, part) for part in parts)


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, whichever of the two forms it is written in."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def published_ports(service: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) for each port the service publishes."""
    published = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            published.append((port.get("host_ip", ""), int(port["published"]), int(port["target"])))
            continue
        parts = str(port).split("/")[0].split(":")
        if len(parts) == 3:
            published.append((parts[0], int(parts[1]), int(parts[2])))
        elif len(parts) == 2:
            published.append(("", int(parts[0]), int(parts[1])))
    return published


def dockerfile_instructions(text: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    instructions: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current = f"{current} {line}".strip()
        if current.endswith("\\"):
            current = current[:-1].rstrip()
            continue
        instructions.append(current)
        current = ""
    if current:
        instructions.append(current)
    return instructions


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE_FILE.read_text()


@pytest.fixture(scope="module")
def compose(compose_text: str) -> dict[str, Any]:
    return yaml.safe_load(compose_text)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def all_environments(compose: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(where, key, value) for the shared env block and every service's environment."""
    for key, value in compose[SHARED_ENV].items():
        yield SHARED_ENV, key, str(value)
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            yield name, key, value


def test_compose_file_is_current_spec_with_declared_volumes(compose, services):
    assert "version" not in compose, "the `version:` key is obsolete in the Compose spec"
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if source.startswith((".", "/", "~")):
                continue  # a bind mount
            assert source in declared, f"{name} mounts volume {source!r}, not declared"
    for data_service in ("postgres", "minio", "kafka", "mongo"):
        mounts = [str(v).split(":")[0] for v in services[data_service].get("volumes", [])]
        assert set(mounts) & declared, f"{data_service} keeps its data in no named volume"


def test_every_embedded_service_has_a_compose_service(services):
    from control.platform import services as embedded_services

    embedded = [s.name for s in embedded_services(Settings(), spark_cluster=True, demo=True)]
    assert "s3" in embedded and "kafka" in embedded, embedded
    missing = {
        name: EMBEDDED_TO_COMPOSE.get(name, name)
        for name in embedded
        if EMBEDDED_TO_COMPOSE.get(name, name) not in services
    }
    assert not missing, f"embedded services without a compose counterpart: {missing}"


@pytest.mark.parametrize(
    "path",
    [
        COMPOSE_FILE,
        ENV_EXAMPLE,
        DOCKERFILE,
        PROJECT_ROOT / "infra" / "compose" / "postgres-init.sh",
    ],
    ids=lambda path: path.name,
)
def test_every_lakehouse_variable_is_a_settings_field(path):
    fields = {f"LAKEHOUSE_{name.upper()}" for name in Settings.model_fields}
    used = set(LAKEHOUSE_VARIABLE.findall(path.read_text()))
    assert used, f"{path.name} uses no LAKEHOUSE_* key at all"
    unknown = sorted(used - fields)
    assert not unknown, f"{path.name} uses keys Settings does not have: {unknown}"


@pytest.fixture
def container_settings(compose, monkeypatch) -> Settings:
    """Settings as a container sees them: only the shared env block, credentials filled in."""
    credentials = fake_credentials()
    for key in list(os.environ):
        if key.startswith("LAKEHOUSE_"):
            monkeypatch.delenv(key)
    for key, value in compose[SHARED_ENV].items():
        monkeypatch.setenv(key, interpolate(value, credentials))
    return Settings(_env_file=None)


def test_shared_env_configures_settings_for_the_containers(container_settings):
    settings = container_settings
    credentials = fake_credentials()
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.s3_endpoint == "http://minio:9000"
    assert (settings.postgres_host, settings.postgres_port) == ("postgres", 5432)
    assert settings.mongo_uri() == "mongodb://mongo:27017/"
    assert settings.spark_master == "spark://spark-master:7077"
    assert settings.missing_credentials == []
    for key, value in credentials.items():
        assert getattr(settings, key.removeprefix("LAKEHOUSE_").lower()) == value


def test_python_services_get_the_shared_env(compose, services):
    shared = {key: str(value) for key, value in compose[SHARED_ENV].items()}
    for name in (*PYTHON_SERVICES, "kafka-init"):
        env = environment(services[name])
        different = {k: env.get(k) for k, v in shared.items() if env.get(k) != v}
        assert not different, f"{name} differs from {SHARED_ENV}: {different}"
    # Servers listen on all interfaces; Airflow's Spark drivers must be reachable by name.
    for name in ("spark-master", "spark-worker", "dashboard"):
        assert environment(services[name]).get("LAKEHOUSE_BIND_HOST") == "0.0.0.0", name
    assert environment(services["airflow"]).get("LAKEHOUSE_BIND_HOST") == "airflow"


def test_credentials_come_from_env_file_only(compose, compose_text):
    checked = 0
    for where, key, value in all_environments(compose):
        if key.endswith(SECRET_SUFFIXES) or key in SECRET_KEYS:
            checked += 1
            assert SECRET_REFERENCE.fullmatch(value), (
                f"{where}: {key} must be a ${{...}} reference to .env without a default, "
                f"not {value!r}"
            )
    for match in URL_PASSWORD.finditer(compose_text):
        assert SECRET_REFERENCE.fullmatch(match["password"]), (
            f"literal password in a URL: {match[0]!r}"
        )
    assert checked >= len(secret_fields()), "fewer credential entries than Settings has"


def test_every_credential_is_required_and_documented(compose):
    required = {
        match["name"]
        for value in compose[SHARED_ENV].values()
        if (match := REQUIRED_REFERENCE.fullmatch(str(value)))
    }
    example = ENV_EXAMPLE.read_text()
    for name in secret_fields():
        key = f"LAKEHOUSE_{name.upper()}"
        assert key in required, f"{SHARED_ENV} must require {key} with ${{{key}:?...}}"
        assert re.search(rf"^#?\s*{key}=\s*$", example, re.M), f".env.example lacks {key}"
    # .env.example lists keys, never values: every assignment in it is empty.
    assigned = re.findall(r"^#?\s*(LAKEHOUSE_\w+)=(\S+)", example, re.M)
    assert not assigned, f".env.example carries values: {assigned}"
    assert ".env" in (PROJECT_ROOT / ".gitignore").read_text().split()


def test_published_ports_are_the_embedded_defaults(services):
    for name, (field, container_port) in PUBLISHED_PORTS.items():
        default = Settings.model_fields[field].default
        ports = published_ports(services[name])
        assert ("127.0.0.1", default, container_port) in ports, (
            f"{name} must publish 127.0.0.1:{default} (LAKEHOUSE_{field.upper()}'s default) "
            f"-> {container_port}, publishes {ports}"
        )


def test_kafka_is_single_node_kraft_without_topic_auto_creation(compose, services):
    kafka = services["kafka"]
    env = environment(kafka)
    assert kafka["image"] == "apache/kafka:4.1.1"
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"].lower() == "false"
    advertised = env["KAFKA_ADVERTISED_LISTENERS"]
    shared = compose[SHARED_ENV]
    assert f"//{shared['LAKEHOUSE_KAFKA_HOST']}:{shared['LAKEHOUSE_KAFKA_PORT']}" in advertised
    assert f"//127.0.0.1:{Settings.model_fields['kafka_port'].default}" in advertised
    # topics are created by the platform (lakehouse.registry), before anything produces
    init = services["kafka-init"]
    assert "KafkaService" in " ".join(map(str, init["command"]))
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["demo-feed"]["depends_on"]["kafka-init"]["condition"] == (
        "service_completed_successfully"
    )


def test_healthchecks_gate_the_dependents(services):
    for name in ("minio", "kafka", "postgres", "mongo"):
        check = services[name].get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
    waits = 0
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        for dependency, spec in depends_on.items():
            waits += 1
            if "healthcheck" in services[dependency]:
                expected = "service_healthy"
            elif services[dependency].get("restart") == "no":
                expected = "service_completed_successfully"
            else:
                expected = spec["condition"]
            assert spec["condition"] == expected, f"{name} -> {dependency}"
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert services["airflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # the streams Airflow supervises write to MongoDB (the orders pipeline's collection)
    assert services["airflow"]["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert waits >= len(PYTHON_SERVICES)


def test_minio_init_creates_the_configured_bucket(compose, services):
    init = services["minio-init"]
    assert init["image"].startswith("minio/mc")
    script = " ".join(map(str, init.get("entrypoint", []))) + " ".join(map(str, init["command"]))
    assert "mc mb" in script and "LAKEHOUSE_S3_BUCKET" in script
    assert environment(init)["LAKEHOUSE_S3_BUCKET"] == str(
        compose[SHARED_ENV]["LAKEHOUSE_S3_BUCKET"]
    )
    default_bucket = interpolate(environment(init)["LAKEHOUSE_S3_BUCKET"], {})
    assert default_bucket == Settings.model_fields["s3_bucket"].default


def test_postgres_init_script_creates_airflow_db_and_readonly_role(services):
    postgres = services["postgres"]
    assert postgres["image"] == "postgres:18"
    env = environment(postgres)
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    assert env["POSTGRES_USER"] == defaults["postgres_user"]
    assert env["POSTGRES_DB"] == defaults["postgres_db"]
    assert env["LAKEHOUSE_AIRFLOW_DB"] == defaults["airflow_db"]
    assert env["LAKEHOUSE_DASHBOARD_USER"] == defaults["dashboard_user"]
    mounts = [str(v) for v in postgres["volumes"]]
    # Postgres 18 images refuse a volume at the old /var/lib/postgresql/data
    assert any(m.split(":")[1] == "/var/lib/postgresql" for m in mounts), mounts
    init = [m for m in mounts if ":/docker-entrypoint-initdb.d/" in m]
    assert init, "no init script mounted into /docker-entrypoint-initdb.d"
    source = PROJECT_ROOT / init[0].split(":")[0]
    assert source.parent == PROJECT_ROOT / "infra" / "compose" and source.is_file()
    script = source.read_text()
    assert "CREATE DATABASE" in script and "CREATE ROLE" in script
    assert "LAKEHOUSE_AIRFLOW_DB" in script and "LAKEHOUSE_DASHBOARD_USER" in script
    assert "LAKEHOUSE_DASHBOARD_PASSWORD" in script
    assert "GRANT SELECT" in script and "NOSUPERUSER" in script


def test_airflow_uses_postgres_localexecutor_and_mounted_dags(services, container_settings):
    airflow = services["airflow"]
    env = environment(airflow)
    conn = interpolate(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], fake_credentials())
    settings = container_settings
    assert conn == settings.postgres_sqlalchemy_url(settings.airflow_db)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    dags = [str(v) for v in airflow["volumes"] if str(v).startswith("./dags:")]
    assert dags, "airflow must mount ./dags"
    assert dags[0].split(":")[1] == env["AIRFLOW__CORE__DAGS_FOLDER"]


def test_demo_feed_runs_the_market_producer_at_the_embedded_rate(services):
    from infra.demo_feed import DemoFeedService

    command = [str(part) for part in services["demo-feed"]["command"]]
    assert command == [
        "python",
        "-m",
        "producers.market",
        "--rate",
        str(DemoFeedService.events_per_second),
    ]


def test_python_services_share_one_image_built_from_the_dockerfile(services):
    images = set()
    for name in PYTHON_SERVICES:
        build = services[name].get("build")
        assert isinstance(build, dict), f"{name} is not built from infra/compose/Dockerfile"
        context = (PROJECT_ROOT / build.get("context", ".")).resolve()
        assert context == PROJECT_ROOT.resolve(), f"{name}: build context must be the repo"
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE.resolve(), name
        images.add(services[name]["image"])
    assert len(images) == 1, f"the Python services use several images: {images}"
    master = " ".join(map(str, services["spark-master"]["command"]))
    worker = " ".join(map(str, services["spark-worker"]["command"]))
    assert "spark-class org.apache.spark.deploy.master.Master" in master
    assert "spark-class org.apache.spark.deploy.worker.Worker" in worker
    assert "spark://spark-master:7077" in worker


def test_dockerfile_installs_pinned_requirements_and_jars():
    assert DOCKERFILE.is_file(), f"{DOCKERFILE} is missing"
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    runs = [i for i in instructions if i.upper().startswith("RUN ")]
    copies = [i for i in instructions if i.upper().startswith("COPY ")]
    base = next(i for i in instructions if i.upper().startswith("FROM "))
    assert re.match(r"FROM python:3\.11-slim", base), base
    assert any(re.search(r"\binfra/requirements\.lock\b", c) for c in copies)
    lock_install = r"\bpip install\b.*--require-hashes\s+-r\s+infra/requirements\.lock\b"
    assert any(re.search(lock_install, r) for r in runs)
    assert any(re.search(r"\bpip install\b.*\s-e\s+\.(\s|$)", r) for r in runs)
    assert any(re.search(r"\blakehouse install\b", r) for r in runs)
    assert any("openjdk-17" in r and "maven" in r for r in runs)
    # the working tree (with .env, .venv, .lakehouse) is never copied wholesale
    assert not [c for c in copies if re.search(r"\s\.\s+\S+$", c)], copies


def test_docker_compose_config_accepts_the_file(tmp_path):
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("the docker CLI is not installed")
    version = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=60
    )
    if version.returncode != 0:
        reason = (version.stderr or version.stdout).strip().splitlines()
        pytest.skip(f"`docker compose` is not available here: {reason[0] if reason else ''}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}

    def config(credentials: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
        env_file = tmp_path / "compose.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in credentials.items()))
        compose_cli = [docker, "compose", "--env-file", str(env_file), "-f", str(COMPOSE_FILE)]
        return subprocess.run(
            [*compose_cli, "config", "--quiet"],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    result = config(fake_credentials())
    assert result.returncode == 0, result.stderr
    # a missing credential is a clear error, not an empty password
    missing = fake_credentials()
    missing.pop("LAKEHOUSE_POSTGRES_PASSWORD")
    result = config(missing)
    assert result.returncode != 0
    assert "LAKEHOUSE_POSTGRES_PASSWORD" in result.stderr


def test_interpolate_helper_follows_compose_rules():
    # the helper the tests above rely on
    assert interpolate("${A:-x}", {}) == "x"
    assert interpolate("${A:-x}", {"A": ""}) == "x"
    assert interpolate("${A-x}", {"A": ""}) == ""
    assert interpolate("a$${A}b", {"A": "1"}) == "a${A}b"
    with pytest.raises(KeyError, match="set it"):
        interpolate("${A:?set it}", {"A": ""})
