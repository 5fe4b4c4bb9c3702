"""The pipelines' shared resources: adding a pipeline adds entries here, not platform code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int | None = None  # None: settings.kafka_default_partitions
    retention_ms: int = 7 * 24 * 3600 * 1000


TRADES_TOPIC = "stock-trades"
REFERENCE_TOPIC = "stock-info"
TRADES_DLQ_TOPIC = "stock-trades-dlq"

TOPICS: tuple[Topic, ...] = (
    # market data (seeds 000 and 003)
    Topic(TRADES_TOPIC),
    Topic(REFERENCE_TOPIC),
    Topic(TRADES_DLQ_TOPIC, partitions=1),
    # user activity (seed 001)
    Topic("user_activity"),
    Topic("enriched_activity"),
    # order-payment matching (seed 002)
    Topic("orders"),
    Topic("payments"),
)


@dataclass(frozen=True)
class Table:
    """A Delta table of the lake. `writer` names the one streaming query allowed to commit
    to it (ARCHITECTURE.md §3: Delta on S3 is only safe with one writer per table)."""

    name: str
    path: str  # relative to settings.lake_uri
    writer: str
    partitions: tuple[str, ...] = ()


TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table("bronze_trades", "bronze/trades", "market_bronze", ("event_date",)),
        Table(
            "bronze_company_reference", "bronze/company_reference", "market_bronze", ("event_date",)
        ),
        Table("quarantine_market", "quarantine/market", "market_bronze", ("ingest_date",)),
        Table("trades_enriched", "silver/trades_enriched", "trades_enrichment", ("event_date",)),
        Table(
            "quarantine_trades_enrichment",
            "quarantine/trades_enrichment",
            "trades_enrichment",
            ("ingest_date",),
        ),
    )
}


@dataclass(frozen=True)
class StreamJob:
    """A long-running Spark driver that Airflow supervises.

    `module` is run by spark-submit (through the apache-spark provider); `queries` are the
    streaming queries it runs, and so the writers (Table.writer) of the tables it owns.
    """

    name: str
    module: str
    queries: tuple[str, ...]
    args: tuple[str, ...] = ()

    def key(self, namespace: str = "") -> str:
        """Identity of one running instance: the job, or the job on an isolated namespace."""
        return f"{self.name}@{namespace}" if namespace else self.name

    def tables(self) -> list[Table]:
        return [table for table in TABLES.values() if table.writer in self.queries]


STREAM_JOBS: dict[str, StreamJob] = {
    job.name: job
    for job in (
        StreamJob(
            "market_pipeline",
            "spark.jobs.market_pipeline",
            ("market_bronze", "trades_enrichment"),
        ),
    )
}

# Tables `lakehouse replay` can rebuild from bronze (spark.jobs.replay).
REPLAYABLE_TABLES: tuple[str, ...] = ("trades_enriched",)
