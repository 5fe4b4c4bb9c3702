"""Incremental sync of silver trades into the Postgres serving tables (seed 000's separate job).

It reads the lake with delta-rs and writes with psycopg: no JVM, so a run every few minutes
costs about a second instead of a Spark start-up, and the rows go from Parquet to COPY
without passing through Spark's collect.

extract: the Delta versions (last synced, latest] from the change data feed, reduced to the
  last change per trade id (inserted, or deleted: a replay replaces a range with a delete
  and an insert per row). Commits without data change, such as OPTIMIZE, carry none. The
  first run reads the snapshot of the latest version instead.
transform: the serving columns and a `deleted` flag; the range's own one-minute bars.
load: one Postgres transaction per version range, which also moves the sync's progress
  (the Delta version) forward, so a crash leaves nothing behind and re-running a range
  changes nothing.
  - A range without deletes is COPYed straight into serving.trades_enriched (inside a
    savepoint: should a trade id already be there, it falls back to the merge below).
    Bars of minutes new to the table come from the range's own bars; bars of minutes that
    already had trades are recomputed from all stored trades of that minute.
  - Otherwise: COPY into a staging table, delete what was deleted, INSERT ... ON CONFLICT
    (trade_id) DO UPDATE only where a value differs, recompute every touched bar.

    python -m lakehouse.serving_sync [--namespace NS] [--max-versions N]
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import typer

from lakehouse.settings import Settings, load_settings

log = logging.getLogger("serving_sync")

SOURCE_TABLE = "trades_enriched"
COLUMNS = ("trade_id", "symbol", "event_time", "price", "volume", "company_name", "sector")
BAR_COLUMNS = ("symbol", "minute", "open", "high", "low", "close", "volume", "vwap", "trade_count")
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


def _bars_recompute(schema: str, keys: str) -> str:
    """Bars of the (symbol, minute) pairs `keys` selects, from every stored trade of them:
    a trade arriving in a later range for an earlier minute still lands in the right bar."""
    return f"""
INSERT INTO {schema}.trades_ohlcv_1m
SELECT t.symbol, date_trunc('minute', t.event_time) AS minute,
       (array_agg(t.price ORDER BY t.event_time, t.trade_id))[1],
       max(t.price), min(t.price),
       (array_agg(t.price ORDER BY t.event_time DESC, t.trade_id DESC))[1],
       sum(t.volume), sum(t.price * t.volume) / NULLIF(sum(t.volume), 0), count(*)
FROM {schema}.trades_enriched t
JOIN ({keys}) k
  ON t.symbol = k.symbol AND t.event_time >= k.minute
 AND t.event_time < k.minute + interval '1 minute'
GROUP BY 1, 2
ON CONFLICT (symbol, minute) DO UPDATE SET open = EXCLUDED.open, high = EXCLUDED.high,
    low = EXCLUDED.low, close = EXCLUDED.close, volume = EXCLUDED.volume,
    vwap = EXCLUDED.vwap, trade_count = EXCLUDED.trade_count
"""


_STAGED_KEYS = "SELECT DISTINCT symbol, date_trunc('minute', event_time) AS minute FROM sync_stage"


def _bars_emptied(schema: str) -> str:
    # A touched minute whose trades were all deleted keeps no bar.
    return f"""
DELETE FROM {schema}.trades_ohlcv_1m b
USING ({_STAGED_KEYS}) k
WHERE b.symbol = k.symbol AND b.minute = k.minute AND NOT EXISTS (
    SELECT 1 FROM {schema}.trades_enriched t WHERE t.symbol = b.symbol
       AND t.event_time >= b.minute AND t.event_time < b.minute + interval '1 minute')
"""


# ---- extract ----------------------------------------------------------------------


def open_table(settings: Settings, path: str, version: int | None = None):
    """The Delta table at `path` (s3a:// as Spark names it, or a local folder), or None."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    uri = path.replace("s3a://", "s3://", 1)
    options = settings.lake_storage_options if uri.startswith("s3://") else None
    try:
        return DeltaTable(uri, version=version, storage_options=options)
    except TableNotFoundError:
        return None


def extract(settings: Settings, path: str, after: int | None, upto: int) -> pa.Table:
    """COLUMNS + `deleted` of the versions (after, upto]; the snapshot when after is None."""
    if after is None:
        snapshot = open_table(settings, path, upto).to_pyarrow_dataset()
        return _inserted(snapshot.to_table(columns=list(COLUMNS)))
    changes = (
        open_table(settings, path)
        .load_cdf(
            starting_version=after + 1,
            ending_version=upto,
            columns=[*COLUMNS, "_change_type", "_commit_version"],
        )
        .read_all()
    )
    return last_change_per_trade(_plain_strings(pa.table(changes)))


def _inserted(rows: pa.Table) -> pa.Table:
    """COLUMNS of rows that are new, with `deleted` false."""
    rows = rows.select(list(COLUMNS))
    return rows.append_column("deleted", pa.repeat(pa.scalar(False), rows.num_rows))


def _plain_strings(table: pa.Table) -> pa.Table:
    """delta-rs hands out string_view columns, which pyarrow's kernels and CSV writer do not
    all take."""
    schema = pa.schema(
        field.with_type(pa.string()) if field.type == pa.string_view() else field
        for field in table.schema
    )
    return table.cast(schema)


def last_change_per_trade(changes: pa.Table) -> pa.Table:
    """The change feed reduced to each trade id's last change: within a version a replaced
    row is deleted and then inserted, so the insert counts as the later one."""
    import duckdb

    trade_ids = changes.column("trade_id")
    change_types = changes.column("_change_type")
    only_inserts = pc.all(pc.equal(change_types, "insert")).as_py()
    if only_inserts is not False and pc.count_distinct(trade_ids).as_py() == len(trade_ids):
        # The usual range: new trades only, each once. Nothing to reduce.
        return _inserted(changes)

    with duckdb.connect() as con:
        con.register("changes", changes)
        return con.execute(
            f"""SELECT {", ".join(COLUMNS)}, _change_type = 'delete' AS deleted
            FROM changes WHERE _change_type IN ('insert', 'update_postimage', 'delete')
            QUALIFY row_number() OVER (
                PARTITION BY trade_id
                ORDER BY _commit_version DESC, _change_type <> 'delete' DESC) = 1"""
        ).fetch_arrow_table()


# ---- transform --------------------------------------------------------------------


def range_bars(rows: pa.Table) -> pa.Table:
    """One-minute bars (BAR_COLUMNS) of the given trades alone, ties broken by trade id as
    in the recomputation from stored trades."""
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


def csv_chunks(rows: pa.Table, chunk_rows: int = 65_536) -> Iterator[bytes]:
    """The rows as CSV without a header, a chunk at a time: COPY takes each while the next
    is encoded, so encoding overlaps with Postgres' ingestion."""
    options = pacsv.WriteOptions(include_header=False)
    for batch in rows.to_batches(max_chunksize=chunk_rows):
        buffer = io.BytesIO()
        pacsv.write_csv(batch, buffer, write_options=options)
        yield buffer.getvalue()


# ---- load -------------------------------------------------------------------------


def synced_version(conn: psycopg.Connection, schema: str, source: str) -> int | None:
    row = conn.execute(
        f"SELECT delta_version FROM {schema}.sync_progress WHERE source = %s", (source,)
    ).fetchone()
    return row[0] if row else None


def copy_rows(conn: psycopg.Connection, table: str, columns: Sequence[str], rows: pa.Table) -> None:
    with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT csv)") as copy:
        for chunk in csv_chunks(rows.select(list(columns))):
            copy.write(chunk)


def _append(conn: psycopg.Connection, schema: str, rows: pa.Table) -> bool:
    """COPY the rows straight into the serving table; False (nothing written) when a trade
    id is already there."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        # DuckDB computes the range's bars on the other core while Postgres ingests.
        bars = pool.submit(range_bars, rows)
        try:
            with conn.transaction():  # a savepoint: a conflict undoes only this COPY
                copy_rows(conn, f"{schema}.trades_enriched", COLUMNS, rows)
        except psycopg.errors.UniqueViolation:
            return False
        conn.execute(f"CREATE TEMP TABLE sync_bars (LIKE {schema}.trades_ohlcv_1m) ON COMMIT DROP")
        copy_rows(conn, "sync_bars", BAR_COLUMNS, bars.result())
    # New minutes take the range's bars; the rest (minutes that had trades) stay in
    # sync_bars and are recomputed from the stored trades.
    conn.execute(
        f"""WITH added AS (
            INSERT INTO {schema}.trades_ohlcv_1m SELECT {", ".join(BAR_COLUMNS)} FROM sync_bars
            ON CONFLICT (symbol, minute) DO NOTHING RETURNING symbol, minute)
        DELETE FROM sync_bars s USING added a WHERE s.symbol = a.symbol AND s.minute = a.minute"""
    )
    conn.execute(_bars_recompute(schema, "SELECT symbol, minute FROM sync_bars"))
    return True


def _merge(conn: psycopg.Connection, schema: str, rows: pa.Table) -> tuple[int, int]:
    """Stage, delete, upsert changed rows, recompute touched bars: (written, deleted)."""
    conn.execute(
        f"CREATE TEMP TABLE sync_stage (LIKE {schema}.trades_enriched, deleted boolean)"
        " ON COMMIT DROP"
    )
    copy_rows(conn, "sync_stage", (*COLUMNS, "deleted"), rows)
    deleted = conn.execute(
        f"DELETE FROM {schema}.trades_enriched t USING sync_stage s"
        " WHERE s.deleted AND t.trade_id = s.trade_id"
    ).rowcount
    target = f"{schema}.trades_enriched"
    written = conn.execute(
        f"INSERT INTO {target} SELECT {', '.join(COLUMNS)} FROM sync_stage WHERE NOT deleted"
        f" ON CONFLICT (trade_id) DO UPDATE SET"
        f" {', '.join(f'{c} = EXCLUDED.{c}' for c in _UPDATED)}"
        f" WHERE ({', '.join(f'{target}.{c}' for c in _UPDATED)})"
        f" IS DISTINCT FROM ({', '.join(f'EXCLUDED.{c}' for c in _UPDATED)})"
    ).rowcount
    conn.execute(_bars_recompute(schema, _STAGED_KEYS))
    if deleted:
        conn.execute(_bars_emptied(schema))
    return written, deleted


def load_range(
    conn: psycopg.Connection,
    schema: str,
    source: str,
    rows: pa.Table,
    upto: int,
    expected: int | None,
) -> tuple[int, int]:
    """One transaction: the rows, their bars and the progress. Returns (rows written,
    rows deleted): rows new or with a changed value, and rows removed."""
    with conn.transaction():
        # Another sync of the same source that committed meanwhile wins; this one stops.
        row = conn.execute(
            f"SELECT delta_version FROM {schema}.sync_progress WHERE source = %s FOR UPDATE",
            (source,),
        ).fetchone()
        if row and row[0] != expected:
            raise RuntimeError(f"{source} progressed to {row[0]} meanwhile; run again")
        has_deletes = rows.num_rows and pc.any(rows.column("deleted")).as_py()
        if rows.num_rows and not has_deletes and _append(conn, schema, rows):
            written, deleted = rows.num_rows, 0
        elif rows.num_rows:
            written, deleted = _merge(conn, schema, rows)
        else:
            written, deleted = 0, 0
        conn.execute(
            f"""INSERT INTO {schema}.sync_progress (source, delta_version, rows_synced)
                VALUES (%s, %s, %s) ON CONFLICT (source) DO UPDATE SET
                delta_version = EXCLUDED.delta_version,
                rows_synced = {schema}.sync_progress.rows_synced + EXCLUDED.rows_synced,
                synced_at = now()""",
            (source, upto, written),
        )
    return written, deleted


def sync(
    settings: Settings,
    path: str,
    schema: str,
    max_versions: int,
    until_version: int | None = None,
) -> dict:
    """Bring the serving tables up to the latest Delta version (or `until_version`), range
    by range."""
    report = {"source": path, "ranges": 0, "rows_read": 0, "rows_inserted": 0, "rows_deleted": 0}
    started = time.monotonic()
    table = open_table(settings, path)
    if table is None:
        log.info("%s does not exist yet: nothing to sync (is the stream running?)", path)
        return {**report, "seconds": round(time.monotonic() - started, 3)}
    latest = table.version() if until_version is None else min(until_version, table.version())
    with psycopg.connect(settings.postgres_dsn()) as conn:
        conn.execute(ddl(schema))
        conn.commit()
        after = synced_version(conn, schema, path)
        conn.commit()
        while after is None or after < latest:
            upto = latest if after is None else min(latest, after + max_versions)
            began = time.monotonic()
            rows = extract(settings, path, after, upto)
            read_s, began = time.monotonic() - began, time.monotonic()
            written, deleted = load_range(conn, schema, path, rows, upto, after)
            log.info(
                "versions %s..%s: %d rows read in %.1f s; %d written, %d deleted in %.1f s",
                "start" if after is None else after,
                upto,
                rows.num_rows,
                read_s,
                written,
                deleted,
                time.monotonic() - began,
            )
            report["ranges"] += 1
            report["rows_read"] += rows.num_rows
            report["rows_inserted"] += written
            report["rows_deleted"] += deleted
            after = upto
        report["delta_version"] = after
    report["seconds"] = round(time.monotonic() - started, 3)
    return report


class SyncFailed(RuntimeError):
    pass


def run(namespace: str = "", max_versions: int = 100) -> dict:
    """The sync in a process of its own (for the DAGs): delta-rs must not share a process
    that forks afterwards, as Airflow's task runner does. Its log goes to this process's
    output (the task log); it reads the settings from the same LAKEHOUSE_* environment.
    Returns its report."""
    sys.stdout.flush()
    with tempfile.TemporaryDirectory() as folder:
        report_file = Path(folder) / "report.json"
        command = [sys.executable, "-m", "lakehouse.serving_sync"]
        command += ["--report-file", str(report_file), "--max-versions", str(max_versions)]
        command += ["--namespace", namespace] if namespace else []
        result = subprocess.run(command, check=False)
        if result.returncode != 0:
            raise SyncFailed(f"the serving sync failed (exit {result.returncode}); output above")
        return json.loads(report_file.read_text())


def main(
    namespace: str = typer.Option("", help="sync an isolated run's lake into its own schema"),
    max_versions: int = typer.Option(100, min=1, help="Delta versions per transaction"),
    report_file: Path | None = typer.Option(None, help="also write the JSON report here"),
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = load_settings()
    from spark.jobs.market_layout import MarketLayout

    layout = (
        MarketLayout.isolated(settings, namespace) if namespace else MarketLayout.default(settings)
    )
    try:
        report = sync(settings, layout.table(SOURCE_TABLE), serving_schema(namespace), max_versions)
    except psycopg.OperationalError as error:
        typer.echo(f"Postgres is not reachable ({error}): start the platform (make up).")
        raise typer.Exit(2) from None
    print(json.dumps(report), flush=True)
    if report_file:
        report_file.write_text(json.dumps(report))


if __name__ == "__main__":
    typer.run(main)
