"""What the dashboard reads, as plain functions over connections (tested without Streamlit).

Market data comes from the marts `lakehouse dbt build` writes to DuckDB, opened read-only
and briefly (a DuckDB file takes one writer or many readers, and dbt must be able to write),
and, for the newest minutes, from the live one-minute bars the enrichment stream keeps in
Postgres (dashboard/live.py).
Pipeline health comes from Postgres `stream_progress`, web activity from the activity
pipeline's serving tables (`page_view_counts`, `active_users`, `user_sessions`) and orders
from the orders pipeline's `order_status`, both in a serving schema (the caller's choice),
all through the read-only dashboard role.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import duckdb
import pandas as pd
import psycopg
from psycopg import sql as pgsql

from dashboard.live import utc, with_live
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
    try:
        con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    except duckdb.IOException as error:
        # dbt holds the file's write lock while it builds (seconds, every few minutes).
        raise NoData(
            "dbt is writing the marts right now: they are back in a few seconds."
        ) from error
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
    # dim_symbol has a row per symbol; the bars have one per symbol and minute.
    return _frame(con, "SELECT symbol FROM dim_symbol ORDER BY symbol")["symbol"].tolist()


def bars(con, symbol: str, width: str, since: datetime | None = None) -> pd.DataFrame:
    table = BAR_TABLES[width]
    sql = f"SELECT * FROM {table} WHERE symbol = ?"
    params: list = [symbol]
    if since is not None:
        sql += " AND bar_start >= ?"
        params.append(since)
    return _frame(con, sql + " ORDER BY bar_start", params)


LIVE_MISSING = (
    "The live bars table is missing: run `lakehouse migrate` (`lakehouse up` does it too), "
    "then start the market pipeline."
)


def live_symbols(conn, schema: str) -> list[str]:
    frame = _serving_frame(
        conn,
        "SELECT DISTINCT symbol FROM {schema}.trades_live_1m",
        schema,
        missing=LIVE_MISSING,
        tables="live bars",
    )
    return frame["symbol"].tolist()


def live_bars(conn, schema: str, symbol: str) -> pd.DataFrame:
    """The symbol's live one-minute bars (bar_start in UTC, like the marts')."""
    frame = _serving_frame(
        conn,
        "SELECT minute AS bar_start, open, high, low, close, volume, notional, trade_count"
        " FROM {schema}.trades_live_1m WHERE symbol = %s ORDER BY minute",
        schema,
        [symbol],
        missing=LIVE_MISSING,
        tables="live bars",
    )
    if not frame.empty:
        frame["bar_start"] = pd.to_datetime(frame["bar_start"], utc=True)
    return frame


def live_as_of(conn, schema: str) -> datetime | None:
    """The newest trade the live bars hold (UTC); None when they are empty."""
    frame = _serving_frame(
        conn,
        # The newest trade is in the newest minute's bars: the minute index finds them.
        "SELECT max(close_at) AS t FROM {schema}.trades_live_1m"
        " WHERE minute = (SELECT max(minute) FROM {schema}.trades_live_1m)",
        schema,
        missing=LIVE_MISSING,
        tables="live bars",
    )
    newest = frame["t"].iloc[0]
    return None if newest is None or pd.isna(newest) else pd.Timestamp(newest).tz_convert("UTC")


def ticker_bars(
    settings: Settings, schema: str, symbol: str, width: str, hours: int = 0
) -> tuple[pd.DataFrame, datetime | None, datetime | None]:
    """The per-ticker chart's bars: history from the marts, the newest minutes from the live
    feed. Returns (bars, the marts' newest minute, the live feed's newest trade); NoData
    when neither has anything."""
    try:
        with marts(settings) as con:
            marts_as_of = data_as_of(con)
            since = marts_as_of - timedelta(hours=hours) if hours and marts_as_of else None
            history = bars(con, symbol, width, since)
    except NoData:
        marts_as_of, history = None, pd.DataFrame()
    try:
        with serving(settings) as conn:
            live = live_bars(conn, schema, symbol)
            live_newest = live_as_of(conn, schema)
    except NoData:
        if history.empty:
            raise
        live, live_newest = pd.DataFrame(), None
    combined = with_live(history, live, width, marts_as_of)
    newest = max((utc(t) for t in (marts_as_of, live_newest) if t is not None), default=None)
    if hours and newest is not None and not combined.empty:
        combined = combined[utc(combined["bar_start"]) >= newest - timedelta(hours=hours)]
    return combined.reset_index(drop=True), marts_as_of, live_newest


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
    """Per streaming query: its last batch, rows/s, lag, late drops, dropped duplicates and
    the Kafka offsets it skipped because retention deleted them first (null: not counted,
    the query fails instead).

    Lag two ways: the records still waiting in Kafka after the last batch (Kafka sources
    only), and how far event time (the watermark) trails the wall clock.
    """
    sql = """
        SELECT DISTINCT ON (query_id) query_name, batch_id AS last_batch,
               batch_time AS last_batch_time, now() - batch_time AS since_last_batch,
               processed_rows_per_s, kafka_records_behind,
               now() - watermark AS event_time_lag,
               sum(rows_dropped_by_watermark) OVER (PARTITION BY query_id) AS late_rows_dropped,
               sum(duplicates_dropped) OVER (PARTITION BY query_id) AS duplicates_dropped,
               sum(kafka_offsets_lost) OVER (PARTITION BY query_id) AS kafka_offsets_lost,
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


# ---- web activity: the activity pipeline's serving tables in Postgres -------------------

ACTIVITY_TABLES_MISSING = (
    "The web activity tables are missing: run `lakehouse migrate` (`lakehouse up` does it "
    "too), then start the pipeline with `lakehouse stream start activity_pipeline`."
)
ACTIVITY_EMPTY = (
    "No web activity yet: start the pipeline with `lakehouse stream start activity_pipeline`"
    " and its producer (`python -m producers.activity`)."
)


@contextmanager
def serving(settings: Settings) -> Iterator[psycopg.Connection]:
    """A read-only connection as the dashboard role, in UTC; NoData when Postgres is down."""
    try:
        conn = psycopg.connect(
            settings.postgres_dsn(dashboard=True), connect_timeout=3, options="-c TimeZone=UTC"
        )
    except psycopg.OperationalError as error:
        raise NoData(
            "Postgres is not reachable: start the platform with `lakehouse up`."
        ) from error
    try:
        conn.read_only = True
        yield conn
    finally:
        conn.close()


def _serving_frame(
    conn,
    query: str,
    schema: str,
    params: list | None = None,
    *,
    missing: str = ACTIVITY_TABLES_MISSING,
    tables: str = "web activity tables",
) -> pd.DataFrame:
    """`query` with {schema} as the quoted serving schema; NoData when its tables are missing
    (the `missing` message) or the role may not read them (naming `tables`)."""
    statement = pgsql.SQL(query).format(schema=pgsql.Identifier(schema))
    try:
        cursor = conn.execute(statement, params or [])
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName) as error:
        conn.rollback()
        raise NoData(missing) from error
    except psycopg.errors.InsufficientPrivilege as error:
        conn.rollback()
        raise NoData(
            f"The dashboard's role may not read the {tables}: run `lakehouse up`,"
            " which grants it read access to every schema."
        ) from error
    columns = [c.name for c in cursor.description]
    return pd.DataFrame(cursor.fetchall(), columns=columns)


def activity_as_of(conn, schema: str) -> datetime | None:
    """The newest window end or session end in the activity tables; None when all are empty."""
    frame = _serving_frame(
        conn,
        "SELECT greatest("
        " (SELECT max(window_end) FROM {schema}.page_view_counts),"
        " (SELECT max(window_end) FROM {schema}.active_users),"
        " (SELECT max(session_end) FROM {schema}.user_sessions)) AS t",
        schema,
    )
    value = frame["t"].iloc[0]
    return None if pd.isna(value) else pd.Timestamp(value).to_pydatetime()


def page_views_per_minute(conn, schema: str, since: datetime) -> pd.DataFrame:
    """window_start, views: page views per one-minute window, summed over the pages."""
    return _serving_frame(
        conn,
        "SELECT window_start, sum(views)::bigint AS views FROM {schema}.page_view_counts"
        " WHERE window_start >= %s GROUP BY window_start ORDER BY window_start",
        schema,
        [since],
    )


def top_pages(conn, schema: str, since: datetime, limit: int = 10) -> pd.DataFrame:
    """page, views: the most viewed pages since `since`, most viewed first."""
    return _serving_frame(
        conn,
        "SELECT page, sum(views)::bigint AS views FROM {schema}.page_view_counts"
        " WHERE window_start >= %s GROUP BY page ORDER BY views DESC, page LIMIT %s",
        schema,
        [since, limit],
    )


def active_users(conn, schema: str, since: datetime) -> pd.DataFrame:
    """window_start, window_end, active_users: distinct users per 5-minute window sliding by
    one minute."""
    return _serving_frame(
        conn,
        "SELECT window_start, window_end, active_users FROM {schema}.active_users"
        " WHERE window_end >= %s ORDER BY window_end",
        schema,
        [since],
    )


def session_lengths(conn, schema: str, since: datetime) -> pd.DataFrame:
    """end_reason, duration_s, sessions: sessions that ended since `since`, counted per
    whole second of length (bounded size, whatever the number of sessions)."""
    return _serving_frame(
        conn,
        "SELECT end_reason, round(duration_s)::bigint AS duration_s, count(*) AS sessions"
        " FROM {schema}.user_sessions WHERE session_end >= %s"
        " GROUP BY 1, 2 ORDER BY 1, 2",
        schema,
        [since],
    )


# ---- orders: the orders pipeline's serving table `order_status` in Postgres ---------------

ORDERS_TABLES_MISSING = (
    "The orders table is missing: run `lakehouse migrate` (`lakehouse up` does it too), then "
    "start the pipeline with `lakehouse stream start orders_pipeline`."
)
ORDERS_EMPTY = (
    "No orders yet: start the pipeline with `lakehouse stream start orders_pipeline` and its"
    " producer (`python -m producers.orders`)."
)
OPEN_STATUSES = ("awaiting_payment", "awaiting_order")
# Open orders' ages: bucket i holds AGE_EDGES_S[i - 1] <= age < AGE_EDGES_S[i] seconds.
AGE_EDGES_S = (60, 300, 900, 1800)
AGE_LABELS = ("under 1 min", "1-5 min", "5-15 min", "15-30 min", "30 min or more")


def _orders_frame(conn, query: str, schema: str, params: list | None = None) -> pd.DataFrame:
    return _serving_frame(
        conn, query, schema, params, missing=ORDERS_TABLES_MISSING, tables="orders table"
    )


def orders_as_of(conn, schema: str) -> datetime | None:
    """The latest state change in `order_status`: the page's "now" (ages and the time range
    are measured from it, not the wall clock, so a replayed or simulated clock reads right);
    None when the table is empty."""
    frame = _orders_frame(conn, "SELECT max(changed_at) AS t FROM {schema}.order_status", schema)
    value = frame["t"].iloc[0]
    return None if pd.isna(value) else pd.Timestamp(value).to_pydatetime()


def order_status_counts(conn, schema: str, since: datetime) -> pd.DataFrame:
    """status, orders: the orders whose state last changed since `since`, per status."""
    return _orders_frame(
        conn,
        "SELECT status, count(*) AS orders FROM {schema}.order_status"
        " WHERE changed_at >= %s GROUP BY status ORDER BY status",
        schema,
        [since],
    )


def open_order_ages(conn, schema: str, as_of: datetime) -> pd.DataFrame:
    """status, age_bucket, orders: the orders still awaiting their partner, whatever the time
    range, by age at `as_of` (from the order's first order or payment time; an order with
    neither counts from its last change). age_bucket indexes AGE_LABELS."""
    return _orders_frame(
        conn,
        "SELECT status, width_bucket(extract(epoch FROM %s::timestamptz"
        " - coalesce(least(order_time, payment_time), changed_at))::float8, %s::float8[])"
        " AS age_bucket, count(*) AS orders"
        " FROM {schema}.order_status WHERE status = ANY(%s)"
        " GROUP BY 1, 2 ORDER BY 1, 2",
        schema,
        [as_of, list(AGE_EDGES_S), list(OPEN_STATUSES)],
    )


def payment_latencies(conn, schema: str, since: datetime) -> pd.DataFrame:
    """latency_s, orders: paid orders since `since`, counted per whole second from order to
    payment (bounded size, whatever the number of orders). Negative when the payment came
    first."""
    return _orders_frame(
        conn,
        "SELECT round(order_to_payment_s)::bigint AS latency_s, count(*) AS orders"
        " FROM {schema}.order_status"
        " WHERE status = 'paid' AND changed_at >= %s AND order_to_payment_s IS NOT NULL"
        " GROUP BY 1 ORDER BY 1",
        schema,
        [since],
    )


# ---- CSV drops: the CSV pipeline's `csv_files`, `user_events_quarantine` and views ------

CSV_TABLES_MISSING = (
    "The CSV drops tables are missing: run `lakehouse migrate` (`lakehouse up` does it too),"
    " then start the pipeline with `lakehouse stream start csv_pipeline`."
)
CSV_EMPTY = (
    "No file processed yet: drop a CSV file into the input folder (`lakehouse status` prints"
    " it) or run `python -m producers.csv_files --files 3`."
)


def _csv_frame(conn, query: str, schema: str, params: list | None = None) -> pd.DataFrame:
    return _serving_frame(
        conn, query, schema, params, missing=CSV_TABLES_MISSING, tables="CSV drops tables"
    )


def csv_file_totals(conn, schema: str) -> pd.DataFrame:
    """One row: files read and rejected, rows loaded, already loaded and quarantined, the
    latest file's time (null when no file was processed)."""
    return _csv_frame(
        conn,
        "SELECT count(*) FILTER (WHERE status = 'loaded') AS files_read,"
        " count(*) FILTER (WHERE status = 'rejected') AS files_rejected,"
        " coalesce(sum(loaded), 0) AS rows_loaded,"
        " coalesce(sum(already_loaded), 0) AS rows_already_loaded,"
        " coalesce(sum(quarantined), 0) AS rows_refused, max(processed_at) AS last_file_at"
        " FROM {schema}.csv_files",
        schema,
    )


def csv_refusals(conn, schema: str) -> pd.DataFrame:
    """reason, rows, last_seen_at: the quarantined rows per reason."""
    return _csv_frame(
        conn,
        "SELECT reason, count(*) AS rows, max(quarantined_at) AS last_seen_at"
        " FROM {schema}.user_events_quarantine GROUP BY reason ORDER BY rows DESC, reason",
        schema,
    )


def csv_recent_files(conn, schema: str, limit: int = 20) -> pd.DataFrame:
    return _csv_frame(
        conn,
        "SELECT source_file, status, rows, loaded, already_loaded, quarantined, reason,"
        " processed_at FROM {schema}.csv_files ORDER BY processed_at DESC, source_file"
        " LIMIT %s",
        schema,
        [limit],
    )


def purchases_per_day(conn, schema: str) -> pd.DataFrame:
    """event_date, views, purchases, revenue, view_to_purchase_rate over every product."""
    return _csv_frame(
        conn,
        "SELECT event_date, sum(views) AS views, sum(purchases) AS purchases,"
        " sum(revenue) AS revenue, round(sum(purchases)::numeric / nullif(sum(views), 0), 4)"
        " AS view_to_purchase_rate FROM {schema}.purchase_analytics"
        " GROUP BY event_date ORDER BY event_date",
        schema,
    )


def top_products(conn, schema: str, limit: int = 10) -> pd.DataFrame:
    return _csv_frame(
        conn,
        "SELECT product_id, sum(purchases) AS purchases, sum(revenue) AS revenue,"
        " sum(views) AS views FROM {schema}.purchase_analytics GROUP BY product_id"
        " ORDER BY revenue DESC, product_id LIMIT %s",
        schema,
        [limit],
    )
