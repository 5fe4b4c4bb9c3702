"""Live one-minute bars: each enrichment micro-batch's trades folded into Postgres
`trades_live_1m` in the batch's own transaction, so the dashboard's newest minutes trail
silver by seconds instead of the serving sync's and dbt's minutes.

transform: `partial_bars`, the batch's trades per (symbol, minute): first and last trade by
(event_time, trade_id) with their prices, high, low, volume, notional, count (pure).
load: one ledgered upsert per batch (spark.postgres_sink): a stored bar absorbs the batch's
part of its minute (the earlier open, the later close, sums), and a batch replayed after a
crash finds its ledger row and changes nothing. Bars older than LIVE_HOURS (by event time,
behind the newest bar) are pruned: the marts hold the history.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.layout import Layout
from lakehouse.pipelines.market import LIVE_BARS, LIVE_HOURS
from lakehouse.settings import Settings
from spark.checkpoints import sink_identity
from spark.postgres_sink import UpsertTarget, upsert_batch

COLUMNS = (
    "symbol",
    "minute",
    "open",
    "open_at",
    "open_trade_id",
    "high",
    "low",
    "close",
    "close_at",
    "close_trade_id",
    "volume",
    "notional",
    "trade_count",
)


def _earlier(column: str, at: str, trade_id: str, *, later: bool = False) -> str:
    """The stored or the new value of `column`, whichever belongs to the earlier (or later)
    trade by (event time, trade id); ids compare byte-wise, as Spark and DuckDB order text."""
    op = ">" if later else "<"
    new = f'(EXCLUDED.{at}, EXCLUDED.{trade_id} COLLATE "C")'
    stored = f'({LIVE_BARS}.{at}, {LIVE_BARS}.{trade_id} COLLATE "C")'
    return f"CASE WHEN {new} {op} {stored} THEN EXCLUDED.{column} ELSE {LIVE_BARS}.{column} END"


def _merges() -> tuple[tuple[str, str], ...]:
    first = ("open", "open_at", "open_trade_id")
    last = ("close", "close_at", "close_trade_id")
    return (
        *((c, _earlier(c, "open_at", "open_trade_id")) for c in first),
        *((c, _earlier(c, "close_at", "close_trade_id", later=True)) for c in last),
        ("high", f"greatest({LIVE_BARS}.high, EXCLUDED.high)"),
        ("low", f"least({LIVE_BARS}.low, EXCLUDED.low)"),
        *((c, f"{LIVE_BARS}.{c} + EXCLUDED.{c}") for c in ("volume", "notional", "trade_count")),
    )


LIVE_TARGET = UpsertTarget(
    table=LIVE_BARS,
    key=("symbol", "minute"),
    columns=COLUMNS,
    merges=_merges(),
    prune=(
        "DELETE FROM {schema}.{table} WHERE minute < "
        f"(SELECT max(minute) FROM {{schema}}.{{table}}) - interval '{LIVE_HOURS} hours'"
    ),
)


def partial_bars(silver: DataFrame) -> DataFrame:
    """Silver rows -> one row per (symbol, minute) of COLUMNS: this batch's part of each bar."""
    order = F.struct("event_time", "trade_id")
    first, last = F.min(order), F.max(order)
    return (
        silver.groupBy("symbol", F.date_trunc("minute", "event_time").alias("minute"))
        .agg(
            F.min_by("price", order).alias("open"),
            first.alias("first"),
            F.max("price").alias("high"),
            F.min("price").alias("low"),
            F.max_by("price", order).alias("close"),
            last.alias("last"),
            F.sum("volume").cast("long").alias("volume"),
            F.sum(F.col("price") * F.col("volume")).alias("notional"),
            F.count(F.lit(1)).alias("trade_count"),
        )
        .select(
            "symbol",
            "minute",
            "open",
            F.col("first.event_time").alias("open_at"),
            F.col("first.trade_id").alias("open_trade_id"),
            "high",
            "low",
            "close",
            F.col("last.event_time").alias("close_at"),
            F.col("last.trade_id").alias("close_trade_id"),
            "volume",
            "notional",
            "trade_count",
        )
    )


def ledger_sink(layout: Layout, query: str) -> str:
    """The name the live bars' batches of `query` go under in the sink ledger."""
    return sink_identity(f"{query}_{LIVE_BARS}", layout.checkpoint(query))


def load(settings: Settings, layout: Layout, silver: DataFrame, query: str, batch_id: int) -> None:
    sink = ledger_sink(layout, query)
    rows = partial_bars(silver).toArrow()
    upsert_batch(settings, layout.serving_schema, LIVE_TARGET, rows, sink, batch_id)
