"""The one SparkSession factory every job uses.

It sets what every job needs and nothing job-specific: the jars from the install step,
Delta, S3A against the configured S3 server, RocksDB state with changelog checkpointing,
UTC, and the running interpreter for Python workers. The same code runs on `local[*]`
and on a standalone master (`settings.spark_master = spark://...`).
"""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

from lakehouse.install import jar_set_ready
from lakehouse.settings import Settings, load_settings

S3A_STATIC_CREDENTIALS = "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
ROCKSDB_PROVIDER = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
# The checkpoint interval new Delta tables take (the writers align existing ones).
CHECKPOINT_INTERVAL_DEFAULT = "spark.databricks.delta.properties.defaults.checkpointInterval"


class SparkSetupError(RuntimeError):
    pass


# The S3 keys: the session factory sets them in the driver; never on a command line.
CREDENTIAL_KEYS = ("spark.hadoop.fs.s3a.access.key", "spark.hadoop.fs.s3a.secret.key")


def java_options(options: str) -> dict[str, str]:
    """The JVM options for the driver and the executors (none: the JVM's defaults)."""
    if not options.strip():
        return {}
    return {
        "spark.driver.extraJavaOptions": options.strip(),
        "spark.executor.extraJavaOptions": options.strip(),
    }


def spark_conf(settings: Settings) -> dict[str, str]:
    """Every configuration key the platform sets (pure, so it can be tested and printed)."""
    jars_dir = settings.jars_dir / "spark"
    jars = sorted(str(p) for p in jars_dir.glob("*.jar"))
    return {
        "spark.jars": ",".join(jars),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.memory": settings.spark_driver_memory,
        **java_options(settings.spark_java_options),
        "spark.driver.host": settings.bind_host,
        "spark.driver.bindAddress": settings.bind_host,
        "spark.ui.showConsoleProgress": "false",
        "spark.log.level": "WARN",
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        # Compiled classes kept for reuse (Spark's default 100). The streams of one driver
        # plan the same stages every micro-batch; with fewer entries than their classes
        # the cache evicts what the next batch needs and Janino compiles it again.
        "spark.sql.codegen.cache.maxEntries": "1000",
        "spark.sql.warehouse.dir": str(settings.home / "spark-warehouse"),
        "spark.sql.streaming.stateStore.providerClass": ROCKSDB_PROVIDER,
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        # New tables keep a change data feed: the Postgres sync reads version ranges from
        # it, and commits without data change (OPTIMIZE) add nothing to it.
        "spark.databricks.delta.properties.defaults.enableChangeDataFeed": "true",
        "spark.databricks.delta.snapshotPartitions": str(settings.spark_delta_snapshot_partitions),
        CHECKPOINT_INTERVAL_DEFAULT: str(settings.delta_checkpoint_interval),
        "spark.pyspark.python": sys.executable,
        # pyspark's own applyInPandasWithState serializer trips a pandas FutureWarning on
        # every call; it would fill the stream logs.
        "spark.executorEnv.PYTHONWARNINGS": "ignore::FutureWarning:pyspark.sql.pandas.serializers",
        "spark.pyspark.driver.python": sys.executable,
        "spark.executorEnv.PYTHONPATH": os.pathsep.join(sys.path),
        # S3A against a non-AWS server on loopback (docs/architecture.md).
        "spark.hadoop.fs.s3a.endpoint": settings.s3_endpoint,
        "spark.hadoop.fs.s3a.endpoint.region": settings.s3_region,
        "spark.hadoop.fs.s3a.access.key": settings.s3_access_key or "",
        "spark.hadoop.fs.s3a.secret.key": settings.s3_secret_key or "",
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.hadoop.fs.s3a.aws.credentials.provider": S3A_STATIC_CREDENTIALS,
        "spark.hadoop.fs.s3a.change.detection.mode": "warn",
        "spark.hadoop.fs.s3a.directory.marker.retention": "keep",
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.attempts.maximum": "3",
        "spark.hadoop.fs.s3a.retry.limit": "3",
        # One driver writes each Delta table (docs/architecture.md); this log store
        # serialises commits inside that driver.
        "spark.delta.logStore.s3a.impl": "io.delta.storage.S3SingleDriverLogStore",
        # VACUUM records VACUUM START/END commits with the files it deleted (maintenance
        # reports them). Delta leaves it off on S3 for concurrent writers; here one driver
        # writes each table, and VACUUM runs in it under the writer's lock.
        "spark.databricks.delta.vacuum.logging.enabled": "true",
        # No .crc file beside each commit: writing one through S3A builds a new S3 client,
        # then PUTs, copies and deletes a temporary object, a sixth of an idle market
        # driver's S3 calls (docs/architecture.md). The driver keeps each table's checksum
        # in memory all the same; readers (Spark, delta-rs, DuckDB) do not need the files.
        "spark.databricks.delta.writeChecksumFile.enabled": "false",
    }


def build_spark_session(
    app_name: str,
    settings: Settings | None = None,
    *,
    master: str | None = None,
    extra_conf: dict[str, str] | None = None,
    needs_lake: bool = True,
) -> SparkSession:
    """The session every job uses; `needs_lake=False` for work on local files only."""
    settings = settings or load_settings()
    if not jar_set_ready(settings, "spark"):
        raise SparkSetupError(
            f"Spark's extra jars are not installed under {settings.jars_dir / 'spark'}: "
            "run `lakehouse install` (or `make up`)."
        )
    if needs_lake and settings.s3_access_key is None:
        raise SparkSetupError(
            f"No S3 credentials in {settings.credentials_path}: run `make up` first."
        )
    # Workers must run this interpreter, with this project importable.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    os.environ.setdefault("SPARK_LOCAL_IP", settings.bind_host)
    builder = SparkSession.builder.appName(app_name)
    # Under spark-submit (Airflow's provider) the submitted --master is the one to use.
    if master or "PYSPARK_GATEWAY_PORT" not in os.environ:
        builder = builder.master(master or settings.spark_master)
    for key, value in {**spark_conf(settings), **(extra_conf or {})}.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
