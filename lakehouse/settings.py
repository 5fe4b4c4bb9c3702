"""The one settings object: every endpoint, credential and path comes from here.

Values come from (highest first) environment variables ``LAKEHOUSE_*``, the project's
``.env``, then the generated ``<home>/credentials.env``, then the embedded defaults below.
The compose deployment sets the same keys with container host names.
"""

from __future__ import annotations

import os
import secrets
import sys
import sysconfig
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import quote_plus

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CREDENTIALS_FILE = "credentials.env"
# The MongoDB-wire server the embedded platform runs (built from its Go module by install).
FERRETDB_VERSION = "v1.24.2"

# Credentials generated on first `up` when not given; field name -> generator.
_GENERATED_CREDENTIALS = {
    "s3_access_key": lambda: "lh" + secrets.token_hex(8),
    "s3_secret_key": lambda: secrets.token_urlsafe(30),
    "postgres_password": lambda: secrets.token_urlsafe(18),
    "dashboard_password": lambda: secrets.token_urlsafe(18),
    "airflow_admin_password": lambda: secrets.token_urlsafe(12),
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LAKEHOUSE_", env_file=PROJECT_ROOT / ".env", extra="ignore"
    )

    home: Path = Field(PROJECT_ROOT / ".lakehouse", description="all data, logs and pids")
    jars_path: Path | None = Field(None, description="jar folder; default <home>/jars")

    # Hosts: 127.0.0.1 in the embedded deployment, service names under compose.
    bind_host: str = "127.0.0.1"
    kafka_host: str = "127.0.0.1"
    s3_host: str = "127.0.0.1"
    postgres_host: str = "127.0.0.1"
    mongo_host: str = "127.0.0.1"

    # Ports are off the usual defaults so the platform does not collide with
    # a Kafka, Postgres, MongoDB or Airflow the user may already run.
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    s3_port: int = 19000
    s3_master_port: int = 19333
    s3_volume_port: int = 18380
    s3_filer_port: int = 18888
    s3_grpc_port_base: int = 29000  # SeaweedFS's internal gRPC ports: base + 1..4
    postgres_port: int = 15432
    mongo_port: int = 17017
    airflow_port: int = 18080
    dashboard_port: int = 18501
    spark_master_port: int = 17077
    spark_master_ui_port: int = 18090
    spark_worker_ui_port: int = 18091

    kafka_default_partitions: int = 3
    # Offsets retention deleted before a stream read them: fail the stream (the default) or
    # skip them, counted per partition in stream_progress (spark/kafka_offsets.py).
    kafka_fail_on_data_loss: bool = True
    s3_bucket: str = "lakehouse"
    s3_region: str = "us-east-1"

    postgres_user: str = "lakehouse"
    postgres_db: str = "lakehouse"
    airflow_db: str = "airflow"
    # FerretDB keeps the MongoDB collections in this database of the platform's Postgres.
    ferretdb_db: str = "ferretdb"
    mongo_database: str = "lakehouse"
    dashboard_user: str = "dashboard_ro"
    airflow_admin_user: str = "admin"

    # Generated into <home>/credentials.env (mode 0600) on first `up` when unset.
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    postgres_password: str | None = None
    dashboard_password: str | None = None
    airflow_admin_password: str | None = None

    # Seconds between a stream's micro-batches when it keeps up (a batch that takes longer
    # is followed at once), for pipelines that declare no interval of their own
    # (Pipeline.trigger_s; of the built-in ones, the market pipeline, whose chart has a
    # freshness goal). Each batch has a fixed cost of Spark jobs and Delta commits, so a
    # longer interval lowers the drivers' CPU and the chart's freshness pays for it: with
    # the four demo feeds on 2 cores, 15 s against 5 s took 1.54 cores instead of 1.82 (all
    # there was) and moved the chart's p95 from 40 to 45 s (docs/benchmarks.md).
    stream_trigger_s: float = Field(default=15.0, ge=0)
    # When set, every pipeline's interval, whatever its declaration says (Pipeline.trigger_s).
    stream_trigger_override_s: float | None = Field(default=None, ge=0)
    # Every pipeline in one streaming driver (the job `streams`) rather than in the driver its
    # declaration names: one JVM and one Python driver instead of one per pipeline, so less
    # memory and CPU on a small machine, and less isolation (a crash or a restart stops every
    # pipeline for a while). Stop the streams before changing it: the drivers change names.
    streams_in_one_driver: bool = False
    spark_master: str = "local[*]"
    spark_driver_memory: str = "1g"
    # JVM options of Spark drivers and executors. Empty keeps the JVM's defaults, right for
    # long-running streams; short runs on few cores (the tests) spend less CPU on JIT with
    # "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC" (docs/architecture.md).
    spark_java_options: str = ""
    # Partitions Delta uses to rebuild a table's state from its log (Delta's default is 50).
    # Checkpoints, maintenance, MERGE and a writer's first append in a process rebuild it; on
    # small streaming tables 50 tiny tasks cost seconds; raise it for tables with huge logs.
    spark_delta_snapshot_partitions: int = 2
    # Commits between two checkpoints of a lake table's log (Delta's default is 10). The commit
    # that writes one rebuilds the table's state inside its micro-batch, 3-10 s on 2 cores;
    # readers replay at most this many small JSON commits after the last checkpoint instead.
    # New tables take it when created, existing ones when their writer first appends.
    delta_checkpoint_interval: int = 100
    # Shuffle partitions, and so the state store partitions of a stateful query when its
    # checkpoint is created (an existing checkpoint keeps its own number): one per core of
    # the machine. Each is a RocksDB instance and a Python call per micro-batch; 8 on 2 cores
    # cost the market enrichment a third of its latency (docs/benchmarks.md). Raise it before
    # a stream's first start when the stream will move to a bigger cluster.
    spark_shuffle_partitions: int = Field(default_factory=lambda: max(2, os.cpu_count() or 2))
    spark_worker_cores: int = 2
    spark_worker_memory: str = "2g"
    airflow_parallelism: int = 4
    # Seconds between two parses of a DAG file (Airflow's default 30). Each parse is a
    # process importing the platform's modules; every 30 s the eight files cost the idle
    # platform 0.1 core. An edited DAG or a newly registered pipeline shows up within this
    # time (or at once with `airflow dags reserialize`).
    airflow_dag_parse_interval_s: int = Field(default=300, ge=1)
    # Airflow's triggerer runs deferred tasks. No DAG of the platform defers, so it is not
    # started (0.3 GiB of RSS and a hundredth of a core less); turn it on for DAGs of your
    # own with deferrable operators, which otherwise wait forever.
    airflow_triggerer: bool = False
    # False: the DAGs run as soon as Airflow sees them (make up); the tests pause them and
    # run single DAG runs with `airflow dags test`.
    airflow_dags_paused: bool = False
    # The pipelines the platform runs: "module:attribute" of a lakehouse.registry.Registry.
    registry: str = "lakehouse.pipelines:REGISTRY"
    service_stop_timeout_s: float = 20.0

    # The CSV drops pipeline's input folder: a local path or an s3a:// prefix (a cluster
    # whose workers share no disk); empty: <home>/incoming/csv. After a file's rows are
    # committed it is moved to the folder's _archive/ or deleted.
    csv_input: str = ""
    csv_after_load: Literal["archive", "delete"] = "archive"

    # ---- paths -------------------------------------------------------------------
    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def jars_dir(self) -> Path:
        return self.jars_path or self.home / "jars"

    @property
    def ferretdb_binary(self) -> Path:
        """The FerretDB server `lakehouse install` builds, cached beside the jar sets (so a
        test platform sharing the jars folder shares it too)."""
        return self.jars_dir / f"ferretdb-{FERRETDB_VERSION}" / "ferretdb"

    @property
    def csv_input_folder(self) -> str:
        return self.csv_input.rstrip("/") or str(self.home / "incoming" / "csv")

    @property
    def checkpoints_dir(self) -> Path:
        return self.home / "checkpoints"

    @property
    def credentials_path(self) -> Path:
        return self.home / CREDENTIALS_FILE

    @property
    def duckdb_path(self) -> Path:
        """The analytics database dbt builds (marts over the lake)."""
        return self.home / "analytics" / "lakehouse.duckdb"

    @property
    def duckdb_extension_dir(self) -> Path:
        """DuckDB extensions from the duckdb-ext-* wheels: never downloaded at run time."""
        return Path(sysconfig.get_paths()["purelib"]) / "duckdb_ext" / "extensions"

    @property
    def venv_bin(self) -> Path:
        return Path(sys.executable).parent

    # ---- endpoints ---------------------------------------------------------------
    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.kafka_host}:{self.kafka_port}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.s3_host}:{self.s3_port}"

    @property
    def lake_uri(self) -> str:
        """Root of the lake as Spark sees it (S3A)."""
        return f"s3a://{self.s3_bucket}"

    @property
    def lake_storage_options(self) -> dict[str, str]:
        """The S3 server for delta-rs (object_store): path-style requests over plain HTTP."""
        return {
            "AWS_ENDPOINT_URL": self.s3_endpoint,
            "AWS_ACCESS_KEY_ID": self.s3_access_key or "",
            "AWS_SECRET_ACCESS_KEY": self.s3_secret_key or "",
            "AWS_REGION": self.s3_region,
            "AWS_ALLOW_HTTP": "true",
            "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false",
        }

    def postgres_dsn(self, database: str | None = None, *, dashboard: bool = False) -> str:
        user, password = (
            (self.dashboard_user, self.dashboard_password)
            if dashboard
            else (self.postgres_user, self.postgres_password)
        )
        return (
            f"host={self.postgres_host} port={self.postgres_port} "
            f"dbname={database or self.postgres_db} user={user} password={password}"
        )

    def postgres_sqlalchemy_url(self, database: str) -> str:
        return (
            f"postgresql+psycopg2://{quote_plus(self.postgres_user)}:"
            f"{quote_plus(self.postgres_password or '')}"
            f"@{self.postgres_host}:{self.postgres_port}/{database}"
        )

    @property
    def jdbc_url(self) -> str:
        return f"jdbc:postgresql://{self.postgres_host}:{self.postgres_port}/{self.postgres_db}"

    def mongo_uri(self) -> str:
        """The MongoDB server (FerretDB embedded, mongod under compose); no credentials."""
        return f"mongodb://{self.mongo_host}:{self.mongo_port}/"

    @property
    def airflow_url(self) -> str:
        return f"http://{self.bind_host}:{self.airflow_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.bind_host}:{self.dashboard_port}"

    @property
    def spark_cluster_master(self) -> str:
        return f"spark://{self.bind_host}:{self.spark_master_port}"

    @cached_property
    def missing_credentials(self) -> list[str]:
        return [name for name in _GENERATED_CREDENTIALS if getattr(self, name) is None]


def load_settings(**overrides: object) -> Settings:
    """Settings with the generated credentials file of the configured home folded in."""
    base = Settings(**overrides)
    if base.credentials_path.exists():
        return Settings(_env_file=(base.credentials_path, PROJECT_ROOT / ".env"), **overrides)
    return base


def ensure_credentials(settings: Settings) -> tuple[Settings, dict[str, str]]:
    """Generate the credentials that are still unset, store them with mode 0600.

    Returns the reloaded settings and the newly generated values (to print once).
    """
    generated = {name: _GENERATED_CREDENTIALS[name]() for name in settings.missing_credentials}
    if not generated:
        return settings, {}
    settings.home.mkdir(parents=True, exist_ok=True)
    path = settings.credentials_path
    existing = path.read_text() if path.exists() else ""
    lines = [f"LAKEHOUSE_{name.upper()}={value}" for name, value in generated.items()]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(existing + "\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    return load_settings(home=settings.home), generated
