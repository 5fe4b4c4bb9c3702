"""Incremental sync of silver trades into Postgres serving tables (seed 000's separate job).

extract: what Delta versions (last synced, latest] changed, read from the change data feed
  and reduced to the last change per trade id (inserted, or deleted: a replay replaces a
  range with a delete and an insert per row). Commits without data change, such as
  OPTIMIZE, carry none. The first run loads the snapshot of the latest version instead.
transform: the serving columns and the `deleted` flag.
load: one Postgres transaction per version range: COPY into a temporary staging table,
  delete what was deleted, INSERT ... ON CONFLICT (trade_id) DO UPDATE only where a value
  differs, recompute the one-minute bars of the (symbol, minute) keys the range touched,
  and move the sync's progress (the Delta version) forward. A crash before the commit
  leaves nothing behind; re-running a range changes nothing.

    python -m spark.jobs.postgres_sync [--namespace NS] [--max-versions N]
"""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path

import psycopg
import typer
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakehouse.settings import Settings, load_settings

log = logging.getLogger("postgres_sync")

SOURCE_TABLE = "trades_enriched"
COLUMNS = (
    "trade_id",
    "symbol",
    "event_time",
    "price",
    "volume",
    "company_name",
    "sector",
)
_UPDATED = COLUMNS[1:]


def serving_schema(namespace: str) -> str:
    return f"serving_{namespace}" if namespace else "serving"


def ddl(schema: str) -> str:
    return f"""
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.trades_enriched (
    trade_id text PRIMARY KEY,
    symbol text NOT NULL,
    event_time timestamptz NOT NULL,
    price double precision NOT NULL,
    volume bigint NOT NULL,
    company_name text,
    sector text
);
CREATE INDEX IF NOT EXISTS trades_enriched_symbol_time
    ON {schema}.trades_enriched (symbol, event_time);
CREATE TABLE IF NOT EXISTS {schema}.trades_ohlcv_1m (
    symbol text NOT NULL,
    minute timestamptz NOT NULL,
    open double precision NOT NULL,
    high double precision NOT NULL,
    low double precision NOT NULL,
    close double precision NOT NULL,
    volume bigint NOT NULL,
    vwap double precision,
    trade_count bigint NOT NULL,
    PRIMARY KEY (symbol, minute)
);
CREATE TABLE IF NOT EXISTS {schema}.sync_progress (
    source text PRIMARY KEY,
    delta_version bigint NOT NULL,
    rows_synced bigint NOT NULL DEFAULT 0,
    synced_at timestamptz NOT NULL DEFAULT now()
);
GRANT USAGE ON SCHEMA {schema} TO PUBLIC;
GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO PUBLIC;
"""


def _bars_upsert(schema: str) -> str:
    # Bars are recomputed from all stored trades of each touched (symbol, minute): a trade
    # arriving in a later range for an earlier minute still lands in the right bar.
    return f"""
INSERT INTO {schema}.trades_ohlcv_1m
SELECT t.symbol, date_trunc('minute', t.event_time) AS minute,
       (array_agg(t.price ORDER BY t.event_time, t.trade_id))[1],
       max(t.price), min(t.price),
       (array_agg(t.price ORDER BY t.event_time DESC, t.trade_id DESC))[1],
       sum(t.volume), sum(t.price * t.volume) / NULLIF(sum(t.volume), 0), count(*)
FROM {schema}.trades_enriched t
JOIN (SELECT DISTINCT symbol, date_trunc('minute', event_time) AS minute FROM sync_stage) k
  ON t.symbol = k.symbol AND t.event_time >= k.minute
 AND t.event_time < k.minute + interval '1 minute'
GROUP BY 1, 2
ON CONFLICT (symbol, minute) DO UPDATE SET open = EXCLUDED.open, high = EXCLUDED.high,
    low = EXCLUDED.low, close = EXCLUDED.close, volume = EXCLUDED.volume,
    vwap = EXCLUDED.vwap, trade_count = EXCLUDED.trade_count
"""


def _bars_emptied(schema: str) -> str:
    # A touched minute whose trades were all deleted keeps no bar.
    return f"""
DELETE FROM {schema}.trades_ohlcv_1m b
USING (SELECT DISTINCT symbol, date_trunc('minute', event_time) AS minute FROM sync_stage) k
WHERE b.symbol = k.symbol AND b.minute = k.minute AND NOT EXISTS (
    SELECT 1 FROM {schema}.trades_enriched t WHERE t.symbol = b.symbol
       AND t.event_time >= b.minute AND t.event_time < b.minute + interval '1 minute')
"""


# ---- extract ----------------------------------------------------------------------


def latest_version(spark: SparkSession, path: str) -> int:
    from delta.tables import DeltaTable

    return DeltaTable.forPath(spark, path).history(1).select("version").first()[0]


def extract(spark: SparkSession, path: str, after: int | None, upto: int) -> DataFrame:
    if after is None:
        snapshot = spark.read.format("delta").option("versionAsOf", upto).load(path)
        return snapshot.withColumn("deleted", F.lit(False))
    changes = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", after + 1)
        .option("endingVersion", upto)
        .load(path)
        .where(F.col("_change_type").isin("insert", "delete"))
    )
    # Within a version a replaced row is deleted and inserted: the insert is the later.
    last_change = Window.partitionBy("trade_id").orderBy(
        F.col("_commit_version").desc(), (F.col("_change_type") == "insert").desc()
    )
    return (
        changes.withColumn("_change_rank", F.row_number().over(last_change))
        .where(F.col("_change_rank") == 1)
        .withColumn("deleted", F.col("_change_type") == "delete")
    )


# ---- transform --------------------------------------------------------------------


def transform(rows: DataFrame) -> DataFrame:
    return rows.select(*COLUMNS, "deleted")


# ---- load -------------------------------------------------------------------------


def synced_version(conn: psycopg.Connection, schema: str, source: str) -> int | None:
    row = conn.execute(
        f"SELECT delta_version FROM {schema}.sync_progress WHERE source = %s", (source,)
    ).fetchone()
    return row[0] if row else None


def load_range(
    conn: psycopg.Connection, schema: str, source: str, csv: bytes, upto: int, expected: int | None
) -> tuple[int, int]:
    """One transaction: stage, merge, bars, progress. Returns (rows written, rows deleted):
    rows new or with a changed value, and rows removed."""
    with conn.transaction():
        # Another sync of the same source that committed meanwhile wins; this one stops.
        row = conn.execute(
            f"SELECT delta_version FROM {schema}.sync_progress WHERE source = %s FOR UPDATE",
            (source,),
        ).fetchone()
        if row and row[0] != expected:
            raise RuntimeError(f"{source} progressed to {row[0]} meanwhile; run again")
        conn.execute(
            f"CREATE TEMP TABLE sync_stage (LIKE {schema}.trades_enriched, deleted boolean)"
            " ON COMMIT DROP"
        )
        with conn.cursor().copy(
            f"COPY sync_stage ({', '.join(COLUMNS)}, deleted) FROM STDIN (FORMAT csv, HEADER true)"
        ) as copy:
            copy.write(csv)
        deleted = conn.execute(
            f"DELETE FROM {schema}.trades_enriched t USING sync_stage s"
            " WHERE s.deleted AND t.trade_id = s.trade_id"
        ).rowcount
        target = f"{schema}.trades_enriched"
        inserted = conn.execute(
            f"INSERT INTO {target} SELECT {', '.join(COLUMNS)} FROM sync_stage WHERE NOT deleted"
            f" ON CONFLICT (trade_id) DO UPDATE SET"
            f" {', '.join(f'{c} = EXCLUDED.{c}' for c in _UPDATED)}"
            f" WHERE ({', '.join(f'{target}.{c}' for c in _UPDATED)})"
            f" IS DISTINCT FROM ({', '.join(f'EXCLUDED.{c}' for c in _UPDATED)})"
        ).rowcount
        conn.execute(_bars_upsert(schema))
        if deleted:
            conn.execute(_bars_emptied(schema))
        conn.execute(
            f"""INSERT INTO {schema}.sync_progress (source, delta_version, rows_synced)
                VALUES (%s, %s, %s) ON CONFLICT (source) DO UPDATE SET
                delta_version = EXCLUDED.delta_version,
                rows_synced = {schema}.sync_progress.rows_synced + EXCLUDED.rows_synced,
                synced_at = now()""",
            (source, upto, inserted),
        )
    return inserted, deleted


def to_csv(df: DataFrame) -> tuple[bytes, int]:
    import pyarrow.csv as pacsv

    table = df.toArrow()
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer)
    return buffer.getvalue(), table.num_rows


def sync(
    spark: SparkSession, settings: Settings, path: str, schema: str, max_versions: int
) -> dict:
    """Bring the serving tables up to the latest Delta version, range by range."""
    report = {"source": path, "ranges": 0, "rows_read": 0, "rows_inserted": 0, "rows_deleted": 0}
    started = time.monotonic()
    with psycopg.connect(settings.postgres_dsn()) as conn:
        conn.execute(ddl(schema))
        conn.commit()
        latest = latest_version(spark, path)
        after = synced_version(conn, schema, path)
        conn.commit()
        while after is None or after < latest:
            upto = latest if after is None else min(latest, after + max_versions)
            csv, rows = to_csv(transform(extract(spark, path, after, upto)))
            inserted, deleted = load_range(conn, schema, path, csv, upto, after)
            log.info(
                "versions %s..%s: %d rows read, %d written, %d deleted",
                after,
                upto,
                rows,
                inserted,
                deleted,
            )
            report["ranges"] += 1
            report["rows_read"] += rows
            report["rows_inserted"] += inserted
            report["rows_deleted"] += deleted
            after = upto
        report["delta_version"] = after
    report["seconds"] = round(time.monotonic() - started, 3)
    return report


def main(
    namespace: str = typer.Option("", help="sync an isolated run's lake into its own schema"),
    max_versions: int = typer.Option(100, min=1, help="Delta versions per transaction"),
    master: str = typer.Option("", help="Spark master; default: the configured one"),
    report_file: Path | None = typer.Option(None, help="also write the JSON report here"),
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = load_settings()
    from spark.jobs.market_layout import MarketLayout
    from spark.session import build_spark_session

    layout = (
        MarketLayout.isolated(settings, namespace) if namespace else MarketLayout.default(settings)
    )
    path = layout.table(SOURCE_TABLE)
    spark = build_spark_session("postgres_sync", settings, master=master or None)
    try:
        from delta.tables import DeltaTable

        if DeltaTable.isDeltaTable(spark, path):
            report = sync(spark, settings, path, serving_schema(namespace), max_versions)
        else:
            log.info("%s does not exist yet: nothing to sync (is the stream running?)", path)
            report = {"source": path, "rows_inserted": 0, "rows_deleted": 0}
        print(json.dumps(report), flush=True)
        if report_file:
            report_file.write_text(json.dumps(report))
    finally:
        spark.stop()


if __name__ == "__main__":
    typer.run(main)
