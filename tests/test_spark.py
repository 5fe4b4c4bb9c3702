"""Spark with Delta on the S3 server: local, on the standalone cluster, and as a stream."""

import json
import subprocess
import sys
import uuid

import psycopg
import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from pyspark.sql import functions as F

from lakehouse.settings import PROJECT_ROOT
from spark.jobs.smoke import transform

pytestmark = [pytest.mark.services, pytest.mark.spark]


def test_transform_is_pure_and_keeps_every_row(spark):
    out = transform(spark.range(20)).collect()
    assert [r.n for r in out] == list(range(20))
    assert {r.bucket for r in out} == set(range(7))


def test_delta_round_trip_on_s3_local(spark, platform):
    path = f"{platform.lake_uri}/tests/delta-{uuid.uuid4().hex}"
    spark.range(500).withColumn("sq", F.col("id") * F.col("id")).write.format("delta").save(path)
    spark.range(500, 600).withColumn("sq", F.col("id") * F.col("id")).write.format("delta").mode(
        "append"
    ).save(path)
    back = spark.read.format("delta").load(path)
    assert back.count() == 600
    assert back.agg(F.sum("id")).first()[0] == sum(range(600))
    history = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").select("version").collect()
    assert sorted(r.version for r in history) == [0, 1]


def test_delta_round_trip_on_the_standalone_cluster(platform):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "spark.jobs.smoke",
            "--master",
            platform.spark_cluster_master,
            "--rows",
            "5000",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["master"] == platform.spark_cluster_master
    assert report["executors"] >= 1  # work ran in the worker's executor, not the driver
    assert report["rows_read"] == report["distinct_n"] == 5000


def test_kafka_to_delta_stream_lands_every_record_once(spark, platform):
    topic = f"test-stream-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=platform.kafka_bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=platform.kafka_bootstrap, acks="all")
    for i in range(1000):
        producer.send(topic, key=str(i % 13).encode(), value=json.dumps({"i": i}).encode())
    producer.flush()
    producer.close()

    path = f"{platform.lake_uri}/tests/stream-{topic}"
    checkpoint = str(platform.checkpoints_dir / f"tests-{topic}")

    def run_once():
        stream = (
            spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", platform.kafka_bootstrap)
            .option("subscribe", topic)
            .option("startingOffsets", "earliest")
            .load()
            .select(
                "partition",
                "offset",
                F.get_json_object(F.col("value").cast("string"), "$.i").cast("int").alias("i"),
            )
        )
        query = (
            stream.writeStream.format("delta")
            .option("checkpointLocation", checkpoint)
            .trigger(availableNow=True)
            .start(path)
        )
        query.awaitTermination(300)
        assert query.exception() is None

    run_once()
    run_once()  # a second run over the same checkpoint must add nothing
    back = spark.read.format("delta").load(path)
    assert back.count() == 1000
    assert back.select("i").distinct().count() == 1000
    assert back.select("partition", "offset").distinct().count() == 1000


def test_postgres_over_spark_jdbc(spark, platform):
    table = f"spark_jdbc_{uuid.uuid4().hex[:8]}"
    jdbc = {
        "url": platform.jdbc_url,
        "user": platform.postgres_user,
        "password": platform.postgres_password,
        "driver": "org.postgresql.Driver",
    }
    rows = spark.range(0, 300).withColumn("label", F.concat(F.lit("row-"), F.col("id")))
    rows.write.format("jdbc").options(dbtable=table, **jdbc).mode("overwrite").save()
    with psycopg.connect(platform.postgres_dsn()) as conn:
        assert conn.execute(f"SELECT count(*), max(label) FROM {table}").fetchone() == (
            300,
            "row-99",
        )
    back = spark.read.format("jdbc").options(dbtable=table, **jdbc).load()
    assert back.count() == 300
