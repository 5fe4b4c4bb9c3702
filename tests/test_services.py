"""The data services for real: Kafka, S3, Postgres and MongoDB answer clients as users use
them."""

import os
import uuid

import boto3
import psycopg
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from minio import Minio
from minio.error import S3Error
from psycopg import sql
from pymongo.errors import DuplicateKeyError

from infra.s3 import s3_client
from lakehouse.mongo import mongo_client
from lakehouse.registry import load_registry

TOPICS = load_registry().topics

pytestmark = pytest.mark.services


def test_kafka_topics_are_created_with_explicit_partitions(platform):
    admin = KafkaAdminClient(bootstrap_servers=platform.kafka_bootstrap)
    try:
        described = {t["name"]: t for t in admin.describe_topics([t.name for t in TOPICS])}
    finally:
        admin.close()
    for topic in TOPICS:
        expected = topic.partitions or platform.kafka_default_partitions
        assert len(described[topic.name]["partitions"]) == expected, topic.name


def test_kafka_produce_and_consume_round_trip(platform):
    topic = "stock-trades"
    marker = uuid.uuid4().hex
    producer = KafkaProducer(bootstrap_servers=platform.kafka_bootstrap, acks="all")
    for i in range(50):
        producer.send(topic, key=f"K{i % 5}".encode(), value=f"{marker}:{i}".encode())
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=platform.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"test-{marker}",
        consumer_timeout_ms=10_000,
    )
    seen = [m.value.decode() for m in consumer if m.value.decode().startswith(marker)]
    consumer.close()
    assert sorted(seen, key=lambda v: int(v.split(":")[1])) == [f"{marker}:{i}" for i in range(50)]


def test_s3_boto3_put_get_and_multipart(platform):
    client = s3_client(platform)
    key = f"tests/{uuid.uuid4().hex}.bin"
    client.put_object(Bucket=platform.s3_bucket, Key=key, Body=b"hello lake")
    assert client.get_object(Bucket=platform.s3_bucket, Key=key)["Body"].read() == b"hello lake"
    big = b"x" * (12 * 2**20)
    config = boto3.s3.transfer.TransferConfig(
        multipart_threshold=5 * 2**20, multipart_chunksize=5 * 2**20
    )
    client.upload_fileobj(
        __import__("io").BytesIO(big), platform.s3_bucket, key + ".big", Config=config
    )
    head = client.head_object(Bucket=platform.s3_bucket, Key=key + ".big")
    assert head["ContentLength"] == len(big)


def test_s3_minio_sdk_put_get(platform):
    client = Minio(
        f"{platform.s3_host}:{platform.s3_port}",
        access_key=platform.s3_access_key,
        secret_key=platform.s3_secret_key,
        secure=False,
        region=platform.s3_region,
    )
    key = f"tests/{uuid.uuid4().hex}.txt"
    client.put_object(platform.s3_bucket, key, __import__("io").BytesIO(b"minio sdk"), 9)
    response = client.get_object(platform.s3_bucket, key)
    try:
        assert response.read() == b"minio sdk"
    finally:
        response.close()
        response.release_conn()


def test_s3_wrong_secret_is_refused(platform):
    client = s3_client(platform, secret_key="not-the-secret")
    with pytest.raises(ClientError) as error:
        client.list_objects_v2(Bucket=platform.s3_bucket)
    assert error.value.response["Error"]["Code"] in {
        "SignatureDoesNotMatch",
        "AccessDenied",
        "InvalidAccessKeyId",
    }
    anonymous = boto3.client(
        "s3",
        endpoint_url=platform.s3_endpoint,
        region_name=platform.s3_region,
        config=Config(signature_version=__import__("botocore").UNSIGNED),
    )
    with pytest.raises(ClientError):
        anonymous.list_objects_v2(Bucket=platform.s3_bucket)


def test_minio_sdk_wrong_secret_is_refused(platform):
    client = Minio(
        f"{platform.s3_host}:{platform.s3_port}",
        access_key=platform.s3_access_key,
        secret_key="wrong",
        secure=False,
        region=platform.s3_region,
    )
    with pytest.raises(S3Error):
        client.list_objects(platform.s3_bucket).__next__()


def test_postgres_reachable_and_dashboard_role_is_read_only(platform):
    table = f"t_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(platform.postgres_dsn(), autocommit=True) as admin:
        admin.execute(f"CREATE TABLE {table} (id int primary key, v text)")
        admin.execute(f"INSERT INTO {table} VALUES (1, 'one')")
    with psycopg.connect(platform.postgres_dsn(dashboard=True), autocommit=True) as reader:
        assert reader.execute(f"SELECT v FROM {table}").fetchall() == [("one",)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute(f"INSERT INTO {table} VALUES (2, 'two')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("CREATE TABLE dashboard_was_here (id int)")
    with psycopg.connect(platform.postgres_dsn(platform.airflow_db)) as airflow_db:
        assert airflow_db.execute("SELECT count(*) FROM alembic_version").fetchone()[0] == 1


def test_dashboard_role_cannot_change_serving_tables_or_open_other_databases(platform):
    with psycopg.connect(platform.postgres_dsn(), autocommit=True) as admin:
        tables = admin.execute(
            """SELECT c.relname, a.attname FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = 1
               WHERE n.nspname = 'serving' AND c.relkind IN ('r', 'p')"""
        ).fetchall()
    assert {"trades_enriched", "trades_ohlcv_1m", "sync_progress"} <= {t for t, _ in tables}
    with psycopg.connect(platform.postgres_dsn(dashboard=True), autocommit=True) as reader:
        for name, column in tables:
            table = sql.Identifier("serving", name)
            reader.execute(sql.SQL("SELECT count(*) FROM {}").format(table))  # it may read
            writes = [
                sql.SQL("UPDATE {} SET {} = {}").format(table, *[sql.Identifier(column)] * 2),
                sql.SQL("DELETE FROM {}").format(table),
                sql.SQL("TRUNCATE {}").format(table),
                sql.SQL("INSERT INTO {} DEFAULT VALUES").format(table),
            ]
            for statement in writes:
                # Rolled back even if allowed: a broken grant must not empty the tables.
                with (
                    pytest.raises(psycopg.errors.InsufficientPrivilege),
                    reader.transaction(force_rollback=True),
                ):
                    reader.execute(statement)
        attributes = reader.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls"
            " FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert attributes == (False,) * 5
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(platform.postgres_user)))
    # Airflow's metadata (connections, variables) and FerretDB's documents: not even CONNECT.
    for database in (platform.airflow_db, platform.ferretdb_db):
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            psycopg.connect(platform.postgres_dsn(database, dashboard=True), connect_timeout=5)


@pytest.fixture
def mongo_collection(platform):
    """A fresh collection of the platform's MongoDB database, dropped afterwards."""
    client = mongo_client(platform)
    collection = client[platform.mongo_database][f"t_{uuid.uuid4().hex[:8]}"]
    try:
        yield collection
    finally:
        collection.drop()
        client.close()


def test_mongo_answers_ping(platform):
    client = mongo_client(platform)
    try:
        assert client.admin.command("ping")["ok"] == 1
    finally:
        client.close()


def upsert_if_newer(collection, key: str, version: int) -> bool:
    """The sinks' version-guarded upsert: False when the stored version is not older (the
    upsert's insert then hits the existing _id: DuplicateKeyError 11000, which callers
    ignore)."""
    try:
        collection.update_one(
            {"_id": key, "v": {"$lt": version}}, {"$set": {"v": version}}, upsert=True
        )
    except DuplicateKeyError as error:
        assert error.code == 11000
        return False
    return True


def test_mongo_version_guarded_upsert_keeps_the_newest(mongo_collection):
    assert upsert_if_newer(mongo_collection, "order-1", 2)  # inserted
    assert mongo_collection.find_one({"_id": "order-1"}) == {"_id": "order-1", "v": 2}
    with pytest.raises(DuplicateKeyError) as refused:
        mongo_collection.update_one(
            {"_id": "order-1", "v": {"$lt": 1}}, {"$set": {"v": 1}}, upsert=True
        )
    assert refused.value.code == 11000
    assert not upsert_if_newer(mongo_collection, "order-1", 2)  # the same version again
    assert mongo_collection.find_one({"_id": "order-1"}) == {"_id": "order-1", "v": 2}
    assert upsert_if_newer(mongo_collection, "order-1", 3)  # a newer one updates in place
    assert list(mongo_collection.find()) == [{"_id": "order-1", "v": 3}]


def test_mongo_write_batch_stops_at_a_refused_upsert(mongo_collection):
    """FerretDB 1.24, unlike mongod: an update batch stops at its first write error even
    when unordered, and the reply then lacks nModified (pymongo's bulk_write fails on it
    with KeyError). So version-guarded upserts go one document at a time; if a FerretDB
    upgrade changes this, batches become possible and this test says so."""
    mongo_collection.insert_one({"_id": "a", "v": 2})
    reply = mongo_collection.database.command(
        {
            "update": mongo_collection.name,
            "updates": [
                {"q": {"_id": "a", "v": {"$lt": 1}}, "u": {"$set": {"v": 1}}, "upsert": True},
                {"q": {"_id": "b", "v": {"$lt": 1}}, "u": {"$set": {"v": 1}}, "upsert": True},
            ],
            "ordered": False,
        }
    )
    assert [error["code"] for error in reply["writeErrors"]] == [11000]
    assert "nModified" not in reply
    assert list(mongo_collection.find()) == [{"_id": "a", "v": 2}]  # "b" was not written


def test_an_airflow_component_that_exits_is_started_again(platform):
    """The scheduler exits when Postgres goes away (a restart); the service starts it again
    instead of leaving the platform without anything that supervises the streams."""
    import signal
    import time

    from infra.airflow import AirflowService

    service = AirflowService(platform)

    def scheduler() -> int | None:
        for proc in service.process.tree():
            try:
                command = proc.cmdline()
                looped = proc.parent() is not None and proc.parent().name() == "bash"
            except Exception:  # gone while we looked
                continue
            if looped and "scheduler" in command and any("airflow" in c for c in command):
                return proc.pid
        return None

    first = scheduler()
    assert first is not None, "no Airflow scheduler process under the service"
    service.process.log_file.touch()
    log_size = service.process.log_file.stat().st_size
    os.kill(first, signal.SIGTERM)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        again = scheduler()
        if again not in (None, first) and service.is_healthy():
            break
        time.sleep(2)
    else:
        pytest.fail("the scheduler was not started again, or Airflow is not healthy")
    with service.process.log_file.open() as log:
        log.seek(log_size)
        assert "airflow scheduler exited" in log.read()
