"""What the dashboard reads, as plain functions over connections (tested without Streamlit).

Market data comes from the marts `lakehouse dbt build` writes to DuckDB, opened read-only
and briefly (a DuckDB file takes one writer or many readers, and dbt must be able to write).
Pipeline health comes from Postgres `stream_progress`, through the read-only dashboard role.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime

import duckdb
import pandas as pd
import psycopg

from lakehouse.settings import Settings

BAR_TABLES = {"1 minute": "fct_ohlcv_1m", "5 minutes": "fct_ohlcv_5m", "1 hour": "fct_ohlcv_1h"}


class NoData(Exception):
    """The marts are not built yet; the message says what to run."""


@contextmanager
def marts(settings: Settings):
    if not settings.duckdb_path.exists():
        raise NoData(
            "No analytics database yet: run the market pipeline, then `lakehouse dbt build`."
        )
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    try:
        yield con
    finally:
        con.close()


def _frame(con, sql: str, params: list | None = None) -> pd.DataFrame:
    try:
        return con.execute(sql, params or []).df()
    except duckdb.CatalogException as error:
        raise NoData("The marts are missing: run `lakehouse dbt build`.") from error


def symbols(con) -> list[str]:
    return _frame(con, "SELECT DISTINCT symbol FROM fct_ohlcv_1m ORDER BY symbol")[
        "symbol"
    ].tolist()


def bars(con, symbol: str, width: str, since: datetime | None = None) -> pd.DataFrame:
    table = BAR_TABLES[width]
    sql = f"SELECT * FROM {table} WHERE symbol = ?"
    params: list = [symbol]
    if since is not None:
        sql += " AND bar_start >= ?"
        params.append(since)
    return _frame(con, sql + " ORDER BY bar_start", params)


def data_as_of(con) -> datetime | None:
    return _frame(con, "SELECT max(bar_start) AS t FROM fct_ohlcv_1m")["t"].iloc[0]


def sectors(con) -> pd.DataFrame:
    return _frame(con, "SELECT * FROM fct_sector_1m ORDER BY bar_start, sector")


def top_movers(con, limit: int = 10) -> pd.DataFrame:
    return _frame(
        con,
        "SELECT symbol, day, day_open, day_close, change, volume FROM mart_top_movers"
        " ORDER BY mover_rank LIMIT ?",
        [limit],
    )


def quarantine_counts(con) -> pd.DataFrame:
    return _frame(
        con,
        "SELECT reason, records, last_seen_at FROM mart_quarantine_reasons"
        " ORDER BY records DESC, reason",
    )


def stream_health(settings: Settings) -> pd.DataFrame:
    """Per streaming query: its last batch, rows/s, lag and late drops.

    Lag two ways: the records still waiting in Kafka after the last batch (Kafka sources
    only), and how far event time (the watermark) trails the wall clock.
    """
    sql = """
        SELECT DISTINCT ON (query_id) query_name, batch_id AS last_batch,
               batch_time AS last_batch_time, now() - batch_time AS since_last_batch,
               processed_rows_per_s, kafka_records_behind,
               now() - watermark AS event_time_lag,
               sum(rows_dropped_by_watermark) OVER (PARTITION BY query_id) AS late_rows_dropped,
               watermark, query_id
        FROM stream_progress
        ORDER BY query_id, batch_id DESC
    """
    try:
        with psycopg.connect(settings.postgres_dsn(dashboard=True), connect_timeout=3) as conn:
            cursor = conn.execute(sql)
            columns = [c.name for c in cursor.description]
            return pd.DataFrame(cursor.fetchall(), columns=columns)
    except psycopg.errors.UndefinedTable:
        return pd.DataFrame()
