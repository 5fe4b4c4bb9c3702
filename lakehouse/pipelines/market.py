"""The market pipeline: stock trades and company reference data.

Kafka `stock-trades` + `stock-info` -> bronze (validated, quarantine for the rest) ->
silver `trades_enriched` (each trade with the company and sector valid at its event time)
-> Postgres serving tables with one-minute bars -> dbt marts and the dashboard.
Its Spark side is spark/jobs/market/, its models dbt_project/models (tag `market`).
"""

from __future__ import annotations

from lakehouse.contracts import Above, Contract, Field, InRange, Matches, RecordSchema
from lakehouse.kit import Pipeline, ServingSpec, Table, Topic
from lakehouse.pipelines.market_bars import OneMinuteBars

TRADES_TOPIC = "stock-trades"
REFERENCE_TOPIC = "stock-info"
TRADES_DLQ_TOPIC = "stock-trades-dlq"
SYMBOL_PATTERN = "^[A-Z]{1,5}$"

_TRADE_V1 = RecordSchema(
    "trade",
    1,
    (
        Field("schema_version", "long"),
        Field("trade_id", "string"),
        Field("symbol", "string"),
        Field("price", "double"),
        Field("volume", "long"),
        Field("event_timestamp", "long"),  # epoch milliseconds, UTC
    ),
)
_SYMBOL_FORMAT = Matches("symbol", "symbol_format", SYMBOL_PATTERN)
TRADE = Contract(
    versions=(_TRADE_V1, _TRADE_V1.evolve(Field("exchange", "string", required=False))),
    rules=(
        _SYMBOL_FORMAT,
        Above("price", "price_not_positive", 0),
        InRange("volume", "volume_negative", low=0),
    ),
)
REFERENCE = Contract(
    versions=(
        RecordSchema(
            "reference",
            1,
            (
                Field("schema_version", "long"),
                Field("symbol", "string"),
                Field("company_name", "string"),
                Field("sector", "string"),
                Field("event_timestamp", "long"),
            ),
        ),
    ),
    rules=(_SYMBOL_FORMAT,),
)

TRADES_ENRICHED = "trades_enriched"
# The live one-minute bars the stream keeps in Postgres, over its newest hours of event time.
LIVE_BARS = "trades_live_1m"
LIVE_HOURS = 6
SERVING_COLUMNS = ("trade_id", "symbol", "event_time", "price", "volume", "company_name", "sector")

PIPELINE = Pipeline(
    name="market",
    job="market_pipeline",
    queries="spark.jobs.market.queries:MarketQueries",
    topics=(
        Topic(TRADES_TOPIC),
        Topic(REFERENCE_TOPIC),
        Topic(TRADES_DLQ_TOPIC, partitions=1),
    ),
    tables=(
        Table("bronze_trades", "bronze/trades", "market_bronze", ("event_date",)),
        Table(
            "bronze_company_reference", "bronze/company_reference", "market_bronze", ("event_date",)
        ),
        Table("quarantine_market", "quarantine/market", "market_bronze", ("ingest_date",)),
        Table(
            TRADES_ENRICHED,
            "silver/trades_enriched",
            "trades_enrichment",
            ("event_date",),
            replay="spark.jobs.market.replay",
        ),
        Table(
            "quarantine_trades_enrichment",
            "quarantine/trades_enrichment",
            "trades_enrichment",
            ("ingest_date",),
        ),
    ),
    serving=(
        ServingSpec(
            source=TRADES_ENRICHED,
            target=TRADES_ENRICHED,
            key=("trade_id",),
            columns=SERVING_COLUMNS,
            after_load=OneMinuteBars(),
        ),
    ),
    dbt_select="tag:market",
    audit="producers.market_audit:AUDIT",
)
