"""The market's one-minute bars in Postgres, kept by the serving sync in the same
transaction as the trades.

One definition for the whole platform (the dbt marts use the same): open is the price of
the first trade by (event_time, trade_id), close the price of the last.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg
    import pyarrow as pa

BAR_COLUMNS = ("symbol", "minute", "open", "high", "low", "close", "volume", "vwap", "trade_count")
TRADES = "trades_enriched"
BARS = "trades_ohlcv_1m"


def range_bars(rows: pa.Table) -> pa.Table:
    """One-minute bars (BAR_COLUMNS) of the given trades alone."""
    import duckdb

    with duckdb.connect() as con:
        con.register("trades", rows)
        return con.execute(
            """SELECT symbol, date_trunc('minute', event_time) AS minute,
                   first(price ORDER BY event_time, trade_id) AS open,
                   max(price) AS high, min(price) AS low,
                   last(price ORDER BY event_time, trade_id) AS close,
                   sum(volume) AS volume,
                   sum(price * volume) / nullif(sum(volume), 0) AS vwap,
                   count(*) AS trade_count
            FROM trades GROUP BY 1, 2"""
        ).fetch_arrow_table()


def bars_recompute(schema: str, keys: str) -> str:
    """Bars of the (symbol, minute) pairs `keys` selects, from every stored trade of them:
    a trade arriving in a later range for an earlier minute still lands in the right bar."""
    return f"""
INSERT INTO {schema}.{BARS}
SELECT t.symbol, date_trunc('minute', t.event_time) AS minute,
       (array_agg(t.price ORDER BY t.event_time, t.trade_id))[1],
       max(t.price), min(t.price),
       (array_agg(t.price ORDER BY t.event_time DESC, t.trade_id DESC))[1],
       sum(t.volume), sum(t.price * t.volume) / NULLIF(sum(t.volume), 0), count(*)
FROM {schema}.{TRADES} t
JOIN ({keys}) k
  ON t.symbol = k.symbol AND t.event_time >= k.minute
 AND t.event_time < k.minute + interval '1 minute'
GROUP BY 1, 2
ON CONFLICT (symbol, minute) DO UPDATE SET open = EXCLUDED.open, high = EXCLUDED.high,
    low = EXCLUDED.low, close = EXCLUDED.close, volume = EXCLUDED.volume,
    vwap = EXCLUDED.vwap, trade_count = EXCLUDED.trade_count
"""


def _staged_keys(stage: str) -> str:
    return f"SELECT DISTINCT symbol, date_trunc('minute', event_time) AS minute FROM {stage}"


def bars_emptied(schema: str, stage: str) -> str:
    # A touched minute whose trades were all deleted keeps no bar.
    return f"""
DELETE FROM {schema}.{BARS} b
USING ({_staged_keys(stage)}) k
WHERE b.symbol = k.symbol AND b.minute = k.minute AND NOT EXISTS (
    SELECT 1 FROM {schema}.{TRADES} t WHERE t.symbol = b.symbol
       AND t.event_time >= b.minute AND t.event_time < b.minute + interval '1 minute')
"""


class OneMinuteBars:
    """The serving sync's after-load step for trades_enriched (lakehouse.kit.AfterLoad)."""

    def prepare(self, rows: pa.Table) -> pa.Table:
        return range_bars(rows)

    def after_append(self, conn: psycopg.Connection, schema: str, prepared: pa.Table) -> None:
        # Imported here: the registry (every DAG file and Airflow task) declares this class,
        # and pyarrow alone would add 0.5 s to each of their imports.
        from lakehouse.pg_copy import copy_rows

        conn.execute(f"CREATE TEMP TABLE sync_bars (LIKE {schema}.{BARS}) ON COMMIT DROP")
        copy_rows(conn, "sync_bars", BAR_COLUMNS, prepared)
        # New minutes take the range's bars; the rest (minutes that had trades) stay in
        # sync_bars and are recomputed from the stored trades.
        conn.execute(
            f"""WITH added AS (
                INSERT INTO {schema}.{BARS} SELECT {", ".join(BAR_COLUMNS)} FROM sync_bars
                ON CONFLICT (symbol, minute) DO NOTHING RETURNING symbol, minute)
            DELETE FROM sync_bars s USING added a
            WHERE s.symbol = a.symbol AND s.minute = a.minute"""
        )
        conn.execute(bars_recompute(schema, "SELECT symbol, minute FROM sync_bars"))

    def after_merge(self, conn: psycopg.Connection, schema: str, stage: str, deleted: int) -> None:
        conn.execute(bars_recompute(schema, _staged_keys(stage)))
        if deleted:
            conn.execute(bars_emptied(schema, stage))
