"""Security properties the platform claims, checked for real: every socket on loopback,
passwords required by Postgres, the serving schemas granted to the dashboard's role and not
to PUBLIC, and hostile namespaces refused before they reach a schema name or any SQL.

The namespace checks need no platform (they run with the unit tests); the others read the
running test platform's sockets and catalogs.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
import pytest

from control.platform import all_services
from infra.postgres import PostgresService
from lakehouse import drivers, supervision
from lakehouse.layout import InvalidNamespace, Layout, check_namespace
from lakehouse.migrations import upgrade_serving, validate_schema
from lakehouse.settings import PROJECT_ROOT, Settings
from tests.conftest import LAKEHOUSE_CLI, PLATFORM_SERVICES, TEST_ENV
from tests.market import pipeline_command

services = pytest.mark.services


# ---- every socket on loopback ------------------------------------------------------------


@dataclass(frozen=True)
class Listener:
    owner: str  # the service (or "driver") whose process tree holds the socket
    name: str
    pid: int
    cmdline: str
    address: str
    port: int

    def __str__(self) -> str:
        return f"{self.owner}: {self.name} pid {self.pid} on {self.address}:{self.port}"


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    # Java's dual-stack sockets report IPv4 addresses as ::ffff:a.b.c.d.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def listeners(owner: str, root: psutil.Process) -> tuple[list[psutil.Process], list[Listener]]:
    """The process tree under `root` and every socket it accepts on: TCP in LISTEN, and
    UDP sockets bound without a peer."""
    tree = [root, *root.children(recursive=True)]
    found = []
    for proc in tree:
        try:
            # AccessDenied is not caught: a tree we cannot read would pass unchecked.
            sockets = proc.net_connections(kind="inet")
            name, cmdline = proc.name(), " ".join(proc.cmdline())
        except psutil.NoSuchProcess:
            continue  # ended between the listing and the read
        for conn in sockets:
            tcp = conn.type == socket.SOCK_STREAM and conn.status == psutil.CONN_LISTEN
            udp = conn.type == socket.SOCK_DGRAM and not conn.raddr
            if tcp or udp:
                found.append(Listener(owner, name, proc.pid, cmdline, *conn.laddr))
    return tree, found


def wait_until(condition, timeout_s: float, what: str, driver: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if driver.poll() is not None:
            pytest.fail(
                f"the driver exited ({driver.returncode}) while waiting for {what}:\n"
                + log.read_text()[-4000:]
            )
        if condition():
            return
        time.sleep(1)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}:\n{log.read_text()[-4000:]}")


def spark_ui_port(ports: list[int]) -> int | None:
    """The port among `ports` where Spark's UI answers. Probed all at once: the other ports
    (RPC, block manager, py4j) may hold an HTTP request until its timeout, and a busy JVM
    can take seconds to serve its first page."""

    def answers(port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60) as response:
                return b"Spark" in response.read()
        except (OSError, ValueError, http.client.HTTPException):
            return False  # not HTTP

    with ThreadPoolExecutor(len(ports) or 1) as pool:
        found = [port for port, ok in zip(ports, pool.map(answers, ports), strict=True) if ok]
    return found[0] if found else None


@services
@pytest.mark.spark
@pytest.mark.slow
def test_every_platform_socket_listens_on_loopback_only(platform, layout, tmp_path):
    """The services' process trees as `lakehouse status` finds them (their pid files), the
    Spark cluster's executors among the worker's children, and a streaming driver on the
    cluster as the supervisor finds it (stream_drivers, under its lock): no socket of any of
    them accepts connections on a wildcard or public address."""
    job = layout.registry.job("market_pipeline")
    job_key = job.key(layout.namespace)
    log = tmp_path / "driver.log"
    with log.open("w") as output:
        driver = subprocess.Popen(
            pipeline_command(layout, "--master", platform.spark_cluster_master),
            env=TEST_ENV,
            cwd=PROJECT_ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def queries_started() -> bool:
            with drivers.connect(platform) as conn:
                names = conn.execute(
                    "SELECT query_name FROM stream_heartbeat WHERE job_key = %s", (job_key,)
                ).fetchall()
            return set(job.queries) <= {name for (name,) in names}

        wait_until(queries_started, 300, "the driver's queries to start", driver, log)
        roots = {s.name: s.process.process() for s in all_services(platform)}
        missing = [name for name in PLATFORM_SERVICES if roots.get(name) is None]
        assert not missing, f"not running on the test platform: {missing}"
        worker = roots["spark-worker"]

        def executor_listens() -> bool:
            _, found = listeners("spark-worker", worker)
            return any("CoarseGrainedExecutorBackend" in item.cmdline for item in found)

        wait_until(executor_listens, 180, "an executor of the driver", driver, log)
        with drivers.connect(platform) as conn:
            assert drivers.lock_holder(conn, job_key) is not None
            (pid,) = conn.execute(
                "SELECT pid FROM stream_drivers WHERE job_key = %s", (job_key,)
            ).fetchone()
        assert pid == driver.pid
        roots["driver"] = psutil.Process(pid)

        checked: dict[str, list[psutil.Process]] = {}
        found: list[Listener] = []
        for owner, root in roots.items():
            if root is not None:
                checked[owner], owned = listeners(owner, root)
                found += owned
        driver_jvm = [
            item
            for item in found
            if item.owner == "driver" and "org.apache.spark.deploy.SparkSubmit" in item.cmdline
        ]
        ui_port = spark_ui_port([item.port for item in driver_jvm])  # while it runs
    finally:
        supervision.stop(platform, job_key, timeout_s=90)
        try:
            driver.wait(60)
        finally:
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)
                driver.wait(30)

    by_owner = {owner: [item for item in found if item.owner == owner] for owner in checked}
    print("\n".join(map(str, found)))
    # Not vacuous: every service and the driver were read and each accepts connections.
    assert set(PLATFORM_SERVICES) | {"driver"} <= set(checked)
    assert all(by_owner[owner] for owner in (*PLATFORM_SERVICES, "driver")), by_owner
    # Its RPC endpoint, block manager, UI and py4j gateway.
    assert len(driver_jvm) >= 3, by_owner["driver"]
    assert ui_port in {item.port for item in driver_jvm}, "the driver's Spark UI was not found"
    offenders = [item for item in found if not is_loopback(item.address)]
    assert not offenders, "listening beyond loopback:\n" + "\n".join(map(str, offenders))
    # The master's REST server would take jobs from any local user, without authentication.
    rest = [item for item in by_owner.get("spark-master", []) if item.port == 6066]
    assert not rest, f"the Spark master's REST submission server is on: {rest}"


def test_loopback_means_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.1")
    for address in ("0.0.0.0", "::", "::ffff:0.0.0.0", "10.0.0.5", "::ffff:192.168.1.2"):
        assert not is_loopback(address)


# ---- Postgres: passwords -----------------------------------------------------------------


@services
@pytest.mark.parametrize("dashboard", [False, True], ids=["admin", "dashboard"])
def test_a_wrong_postgres_password_is_refused(platform: Settings, dashboard: bool) -> None:
    user = platform.dashboard_user if dashboard else platform.postgres_user
    # Over TCP and over the Unix socket: pg_hba.conf has a line for each.
    hosts = (platform.postgres_host, str(PostgresService(platform)._socket_dir))
    for host in hosts:
        for password in (f"wrong-{secrets.token_hex(8)}", ""):
            with pytest.raises(psycopg.OperationalError, match="password"):
                psycopg.connect(
                    host=host,
                    port=platform.postgres_port,
                    dbname=platform.postgres_db,
                    user=user,
                    password=password,
                    connect_timeout=5,
                )
    # The refusal is about the password: the right one gets in.
    with psycopg.connect(platform.postgres_dsn(dashboard=dashboard)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (user,)


@services
def test_postgres_authenticates_every_connection_with_scram(platform: Settings) -> None:
    with psycopg.connect(platform.postgres_dsn()) as conn:
        rules = conn.execute(
            "SELECT line_number, type, auth_method, error FROM pg_hba_file_rules"
        ).fetchall()
        encryption = conn.execute("SHOW password_encryption").fetchone()[0]
        stored = dict(
            conn.execute(
                "SELECT rolname, rolpassword FROM pg_authid WHERE rolname IN (%s, %s)",
                (platform.postgres_user, platform.dashboard_user),
            ).fetchall()
        )
    assert rules and all(error is None for *_, error in rules), rules
    # trust, password (clear text), peer and ident would let a connection in without the
    # role's password, or send it in the clear.
    weak = [rule for rule in rules if rule[2] != "scram-sha-256"]
    assert not weak, f"pg_hba.conf lines without scram-sha-256: {weak}"
    assert encryption == "scram-sha-256"
    assert set(stored) == {platform.postgres_user, platform.dashboard_user}
    assert all(value.startswith("SCRAM-SHA-256$") for value in stored.values())


# ---- Postgres: grants ----------------------------------------------------------------------

SERVING_SCHEMAS = "(n.nspname = 'serving' OR n.nspname LIKE 'serving\\_%')"


@services
def test_serving_schemas_are_granted_to_the_dashboard_role_not_to_public(platform: Settings):
    reader = platform.dashboard_user
    with psycopg.connect(platform.postgres_dsn()) as conn:
        schemas = conn.execute(
            f"SELECT n.nspname FROM pg_namespace n WHERE {SERVING_SCHEMAS}"
        ).fetchall()
        # aclexplode: grantee 0 is PUBLIC. A NULL acl (owner only) explodes to no rows, so
        # the dashboard's USAGE/SELECT must be there explicitly.
        schema_acl = conn.execute(
            f"""SELECT n.nspname, a.grantee, a.grantee::regrole::text, a.privilege_type
                FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a
                WHERE {SERVING_SCHEMAS}"""
        ).fetchall()
        tables = conn.execute(
            f"""SELECT n.nspname, c.relname, c.relkind FROM pg_class c
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE {SERVING_SCHEMAS} AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')"""
        ).fetchall()
        table_acl = conn.execute(
            f"""SELECT n.nspname, c.relname, a.grantee, a.grantee::regrole::text,
                       a.privilege_type
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                CROSS JOIN LATERAL aclexplode(c.relacl) a
                WHERE {SERVING_SCHEMAS} AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')"""
        ).fetchall()
        # What new tables of a serving schema will get (ALTER DEFAULT PRIVILEGES).
        default_acl = conn.execute(
            """SELECT coalesce(d.defaclnamespace::regnamespace::text, ''), d.defaclobjtype,
                      a.privilege_type
               FROM pg_default_acl d CROSS JOIN LATERAL aclexplode(d.defaclacl) a
               WHERE a.grantee = 0"""
        ).fetchall()
        public_grants = conn.execute(
            """SELECT table_schema, table_name, privilege_type
               FROM information_schema.role_table_grants
               WHERE grantee = 'PUBLIC'
                 AND (table_schema = 'serving' OR table_schema LIKE 'serving\\_%')"""
        ).fetchall()
        public_schema = conn.execute(
            """SELECT a.privilege_type FROM pg_namespace n
               CROSS JOIN LATERAL aclexplode(n.nspacl) a
               WHERE n.nspname = 'public' AND a.grantee = 0"""
        ).fetchall()
        databases = conn.execute(
            """SELECT d.datname, a.privilege_type FROM pg_database d
               CROSS JOIN LATERAL aclexplode(d.datacl) a
               WHERE a.grantee = 0 AND d.datname = ANY(%s)""",
            ([platform.airflow_db, platform.ferretdb_db],),
        ).fetchall()

    assert ("serving",) in schemas
    assert {"trades_enriched", "trades_ohlcv_1m"} <= {t for s, t, _ in tables if s == "serving"}
    to_public = [row for row in schema_acl if row[1] == 0] + [r for r in table_acl if r[2] == 0]
    assert not to_public, f"granted to PUBLIC: {to_public[:20]} ({len(to_public)} in all)"
    assert not public_grants, public_grants[:20]
    assert not default_acl, f"default privileges for PUBLIC: {default_acl[:20]}"
    with_usage = {
        s for s, _, role, privilege in schema_acl if (role, privilege) == (reader, "USAGE")
    }
    assert with_usage == {s for (s,) in schemas}
    readable = {(s, t) for s, t, _, role, p in table_acl if (role, p) == (reader, "SELECT")}
    unreadable = [(s, t) for s, t, kind in tables if kind != "S" and (s, t) not in readable]
    assert not unreadable, f"the dashboard role cannot read: {unreadable[:20]}"
    # PG15+ makes this the default; `up` also revokes it explicitly.
    assert {privilege for (privilege,) in public_schema} <= {"USAGE"}
    assert not databases, f"PUBLIC may use Airflow's or FerretDB's database: {databases}"


# ---- namespaces: refused before a schema name or any SQL ----------------------------------

HOSTILE_NAMESPACES = [
    "x; DROP SCHEMA serving CASCADE",
    'a"b',
    "../x",
    "Upper",
    "a" * 41,
    " ",
    "   ",
    "x y",
    "x-y",
    "_x",
    "x\n",  # `$` in a Python regex also matches before a final newline
    "x\x00",
    "\u00e9t\u00e9",
    "x'--",
]


@pytest.mark.parametrize("namespace", HOSTILE_NAMESPACES)
def test_a_hostile_namespace_never_becomes_a_layout(namespace: str) -> None:
    with pytest.raises(InvalidNamespace, match="is not valid"):
        check_namespace(namespace)
    # Refused before the registry is read: there is no Layout, so no serving_schema.
    with pytest.raises(InvalidNamespace):
        Layout(Settings(), namespace)


@pytest.mark.parametrize("namespace", ["", "a", "0", "9_x", "t0a1_b", "a" * 40])
def test_every_valid_namespace_gives_a_schema_the_migrations_accept(namespace: str) -> None:
    # The two checks must agree: a namespace the layout accepts is never refused later.
    schema = Layout(Settings(), namespace).serving_schema
    assert validate_schema(schema) == schema
    assert schema == "serving" or schema == f"serving_{namespace}"


# Those whose schema name is not an identifier ('serving__x' from '_x' is one).
NOT_IDENTIFIERS = [ns for ns in HOSTILE_NAMESPACES if not re.fullmatch("[a-z0-9_]*", ns)]


@pytest.mark.parametrize("namespace", NOT_IDENTIFIERS)
def test_the_migrations_refuse_a_hostile_serving_schema_before_any_sql(namespace: str) -> None:
    """The migrations check their schema argument again (it goes into DDL text): the schema
    name a hostile namespace would give is refused without connecting (port 1)."""
    settings = Settings(postgres_port=1, postgres_password="unused")
    with pytest.raises(ValueError, match=r"(?i)schema"):
        upgrade_serving(settings, f"serving_{namespace}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


HOSTILE = "x; DROP SCHEMA serving CASCADE"
ENTRY_POINTS = {
    "driver": [sys.executable, "-m", "spark.driver", "--job", "market_pipeline"],
    "replay job": [sys.executable, "-m", "spark.jobs.market.replay", "--from", "2026-01-01"],
    "serving sync": [sys.executable, "-m", "lakehouse.serving_sync"],
    "lakehouse migrate": [LAKEHOUSE_CLI, "migrate"],
    "lakehouse stream": [LAKEHOUSE_CLI, "stream", "status"],
    "lakehouse replay": [LAKEHOUSE_CLI, "replay", "--from", "2026-01-01"],
}


@pytest.mark.parametrize("command", ENTRY_POINTS.values(), ids=ENTRY_POINTS.keys())
def test_entry_points_refuse_a_hostile_namespace_before_any_service(command: list[str]):
    """With Postgres, Kafka and S3 unreachable, the answer is still the namespace sentence:
    the check runs before any connection, lock or JVM."""
    down = {f"LAKEHOUSE_{name}_PORT": str(free_port()) for name in ("POSTGRES", "KAFKA", "S3")}
    result = subprocess.run(
        [*command, "--namespace", HOSTILE],
        env={**TEST_ENV, **down},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_ROOT,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    # One sentence (the CLI's console may wrap it over lines).
    sentence = " ".join(output.split()).removeprefix("error: ")
    assert sentence.startswith(f"namespace {HOSTILE!r} is not valid:"), output
    assert sentence.endswith("starting with a letter or digit."), output
