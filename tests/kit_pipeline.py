"""A small pipeline declared outside the platform, in a registry of its own: pings from
Kafka through the kit's bronze routing into Delta, and into a Postgres serving table.

Pointing LAKEHOUSE_REGISTRY at `tests.kit_pipeline:REGISTRY` makes the supervisor, the
maintenance and sync DAGs and the CLI run it next to the market pipeline, with no change
to platform code: that is what tests/test_pipeline_kit.py shows.
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.contracts import Contract, Field, InRange, RecordSchema
from lakehouse.kit import Pipeline, ServingSpec, Table, Topic
from lakehouse.pipelines import market
from lakehouse.registry import Registry
from spark import bronze
from spark.delta_sink import append_to_tables, persisted, writer_lock
from spark.driver import DriverContext, Starter

QUERY = "pings_bronze"
PING = Contract(
    versions=(
        RecordSchema(
            "ping",
            1,
            (
                Field("schema_version", "long"),
                Field("ping_id", "string"),
                Field("value", "long"),
                Field("event_timestamp", "long"),
            ),
        ),
    ),
    rules=(InRange("value", "value_out_of_range", 0, 1000),),
)
PIPELINE = Pipeline(
    name="pings",
    job="pings_job",
    queries="tests.kit_pipeline:PingQueries",
    topics=(Topic("pings"),),
    tables=(
        Table("bronze_pings", "bronze/pings", QUERY, ("event_date",)),
        Table("quarantine_pings", "quarantine/pings", QUERY, ("ingest_date",)),
    ),
    serving=(ServingSpec("bronze_pings", "pings", key=("ping_id",), columns=("ping_id", "value")),),
    migrations=Path(__file__).parent / "kit_migrations",
)
REGISTRY = Registry((market.PIPELINE, PIPELINE))


def outputs(raw: DataFrame) -> dict[str, DataFrame]:
    routed = bronze.route(bronze.kafka_records(raw), PING)
    event_time = F.timestamp_millis("event_timestamp")
    accepted = bronze.accepted(routed).select(
        "ping_id",
        "value",
        event_time.alias("event_time"),
        F.to_date(event_time).alias("event_date"),
    )
    quarantined = bronze.quarantined(routed, bronze.KAFKA_COLUMNS).withColumn(
        "ingest_date", F.current_date()
    )
    return {"bronze_pings": accepted, "quarantine_pings": quarantined}


class PingQueries:
    def __init__(self, params: dict[str, str]) -> None:
        if params:
            raise ValueError(f"the pings pipeline takes no parameters, not {sorted(params)}")

    def prepare(self, ctx: DriverContext) -> None:
        pass  # nothing reads its tables as a stream

    def starters(self, ctx: DriverContext) -> list[Starter]:
        layout = ctx.layout

        def per_batch(batch: DataFrame, batch_id: int) -> None:
            with writer_lock(QUERY), persisted(batch) as rows:
                append_to_tables(layout, outputs(batch).items(), QUERY, batch_id, rows=rows)

        def start():
            return (
                bronze.kafka_stream(ctx.spark, ctx.settings, [layout.topic("pings")])
                .writeStream.queryName(QUERY)
                .foreachBatch(per_batch)
                .option("checkpointLocation", layout.checkpoint(QUERY))
                .trigger(**ctx.trigger)
                .start()
            )

        return [start]
