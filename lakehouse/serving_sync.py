"""Incremental sync of Delta tables into Postgres serving tables, for every declared
`ServingSpec` (lakehouse/kit.py), exactly once.

It reads the lake with delta-rs and writes with psycopg: no JVM, so a run every few minutes
costs about a second instead of a Spark start-up, and the rows go from Parquet to COPY
without passing through Spark's collect.

extract: the Delta versions (last synced, latest] from the change data feed, reduced to the
  last change per key (inserted, or deleted: a replay replaces a range with a delete and an
  insert per row). Commits without data change, such as OPTIMIZE, carry none. The first run
  reads the snapshot of the latest version instead.
load: one Postgres transaction per version range, which also moves the sync's progress
  (the Delta version) forward, so a crash leaves nothing behind and re-running a range
  changes nothing.
  - A range without deletes is COPYed straight into the serving table (inside a savepoint:
    should a key already be there, it falls back to the merge below).
  - Otherwise: COPY into a staging table, delete what was deleted, INSERT ... ON CONFLICT
    (key) DO UPDATE only where a value differs.
  - The spec's after-load step (the market's one-minute bars) runs in the same transaction.
The serving tables themselves come from the migrations (lakehouse/migrations/).

    python -m lakehouse.serving_sync [--pipeline NAME] [--namespace NS] [--max-versions N]
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import typer

from lakehouse.kit import ServingSpec
from lakehouse.layout import InvalidNamespace, Layout
from lakehouse.migrations import upgrade_layout
from lakehouse.pg_copy import copy_rows
from lakehouse.registry import RegistryError
from lakehouse.settings import Settings, load_settings

log = logging.getLogger("serving_sync")
STAGE = "sync_stage"


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


def extract(
    settings: Settings, spec: ServingSpec, path: str, after: int | None, upto: int
) -> pa.Table:
    """The spec's columns + `deleted` of the versions (after, upto]; the snapshot when after
    is None."""
    if after is None:
        snapshot = open_table(settings, path, upto).to_pyarrow_dataset()
        return _inserted(snapshot.to_table(columns=list(spec.columns)), spec)
    changes = (
        open_table(settings, path)
        .load_cdf(
            starting_version=after + 1,
            ending_version=upto,
            columns=[*spec.columns, "_change_type", "_commit_version"],
        )
        .read_all()
    )
    return last_change_per_key(plain_strings(pa.table(changes)), spec)


def _inserted(rows: pa.Table, spec: ServingSpec) -> pa.Table:
    """The spec's columns of rows that are new, with `deleted` false."""
    rows = rows.select(list(spec.columns))
    return rows.append_column("deleted", pa.repeat(pa.scalar(False), rows.num_rows))


def plain_strings(table: pa.Table) -> pa.Table:
    """delta-rs hands out string_view columns, which pyarrow's kernels and CSV writer do not
    all take."""
    schema = pa.schema(
        field.with_type(pa.string()) if field.type == pa.string_view() else field
        for field in table.schema
    )
    return table.cast(schema)


def last_change_per_key(changes: pa.Table, spec: ServingSpec) -> pa.Table:
    """The change feed reduced to each key's last change: within a version a replaced row
    is deleted and then inserted, so the insert counts as the later one."""
    import duckdb

    change_types = changes.column("_change_type")
    only_inserts = pc.all(pc.equal(change_types, "insert")).as_py()
    keys = changes.select(list(spec.key))
    unique = keys.group_by(list(spec.key)).aggregate([]).num_rows == keys.num_rows
    if only_inserts is not False and unique:
        # The usual range: new rows only, each once. Nothing to reduce.
        return _inserted(changes, spec)

    with duckdb.connect() as con:
        con.register("changes", changes)
        return con.execute(
            f"""SELECT {", ".join(spec.columns)}, _change_type = 'delete' AS deleted
            FROM changes WHERE _change_type IN ('insert', 'update_postimage', 'delete')
            QUALIFY row_number() OVER (
                PARTITION BY {", ".join(spec.key)}
                ORDER BY _commit_version DESC, _change_type <> 'delete' DESC) = 1"""
        ).fetch_arrow_table()


# ---- load -------------------------------------------------------------------------


def synced_version(conn: psycopg.Connection, schema: str, source: str) -> int | None:
    row = conn.execute(
        f"SELECT delta_version FROM {schema}.sync_progress WHERE source = %s", (source,)
    ).fetchone()
    return row[0] if row else None


def _append(conn: psycopg.Connection, schema: str, spec: ServingSpec, rows: pa.Table) -> bool:
    """COPY the rows straight into the serving table; False (nothing written) when a key
    is already there."""
    step = spec.after_load
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The after-load step prepares (DuckDB) on the other core while Postgres ingests.
        prepared = pool.submit(step.prepare, rows) if step else None
        try:
            with conn.transaction():  # a savepoint: a conflict undoes only this COPY
                copy_rows(conn, f"{schema}.{spec.target}", spec.columns, rows)
        except psycopg.errors.UniqueViolation:
            return False
        if prepared:
            step.after_append(conn, schema, prepared.result())
    return True


def _merge(conn: psycopg.Connection, schema: str, spec: ServingSpec, rows: pa.Table):
    """Stage, delete, upsert changed rows, run the after-load step: (written, deleted)."""
    target = f"{schema}.{spec.target}"
    conn.execute(f"CREATE TEMP TABLE {STAGE} (LIKE {target}, deleted boolean) ON COMMIT DROP")
    copy_rows(conn, STAGE, (*spec.columns, "deleted"), rows)
    matches = " AND ".join(f"t.{k} = s.{k}" for k in spec.key)
    deleted = conn.execute(
        f"DELETE FROM {target} t USING {STAGE} s WHERE s.deleted AND {matches}"
    ).rowcount
    updated = [c for c in spec.columns if c not in spec.key]
    on_conflict = (
        f" ON CONFLICT ({', '.join(spec.key)}) DO UPDATE SET"
        f" {', '.join(f'{c} = EXCLUDED.{c}' for c in updated)}"
        f" WHERE ({', '.join(f'{target}.{c}' for c in updated)})"
        f" IS DISTINCT FROM ({', '.join(f'EXCLUDED.{c}' for c in updated)})"
        if updated
        else f" ON CONFLICT ({', '.join(spec.key)}) DO NOTHING"
    )
    written = conn.execute(
        f"INSERT INTO {target} SELECT {', '.join(spec.columns)} FROM {STAGE} WHERE NOT deleted"
        + on_conflict
    ).rowcount
    if spec.after_load:
        spec.after_load.after_merge(conn, schema, STAGE, deleted)
    return written, deleted


def load_range(
    conn: psycopg.Connection,
    schema: str,
    spec: ServingSpec,
    source: str,
    rows: pa.Table,
    upto: int,
    expected: int | None,
) -> tuple[int, int]:
    """One transaction: the rows, the after-load step and the progress. Returns (rows
    written, rows deleted): rows new or with a changed value, and rows removed."""
    with conn.transaction():
        # Another sync of the same source that committed meanwhile wins; this one stops.
        row = conn.execute(
            f"SELECT delta_version FROM {schema}.sync_progress WHERE source = %s FOR UPDATE",
            (source,),
        ).fetchone()
        if row and row[0] != expected:
            raise RuntimeError(f"{source} progressed to {row[0]} meanwhile; run again")
        has_deletes = rows.num_rows and pc.any(rows.column("deleted")).as_py()
        if rows.num_rows and not has_deletes and _append(conn, schema, spec, rows):
            written, deleted = rows.num_rows, 0
        elif rows.num_rows:
            written, deleted = _merge(conn, schema, spec, rows)
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
    spec: ServingSpec,
    layout: Layout,
    max_versions: int = 100,
    until_version: int | None = None,
) -> dict:
    """Bring the spec's serving table up to the latest Delta version (or `until_version`),
    range by range."""
    path, schema = layout.table(spec.source), layout.serving_schema
    report = {
        "source": path,
        "target": f"{schema}.{spec.target}",
        "ranges": 0,
        "rows_read": 0,
        "rows_inserted": 0,
        "rows_deleted": 0,
    }
    started = time.monotonic()
    table = open_table(settings, path)
    if table is None:
        log.info("%s does not exist yet: nothing to sync (is the stream running?)", path)
        return {**report, "seconds": round(time.monotonic() - started, 3)}
    latest = table.version() if until_version is None else min(until_version, table.version())
    with psycopg.connect(settings.postgres_dsn()) as conn:
        after = synced_version(conn, schema, path)
        conn.commit()
        while after is None or after < latest:
            upto = latest if after is None else min(latest, after + max_versions)
            began = time.monotonic()
            rows = extract(settings, spec, path, after, upto)
            read_s, began = time.monotonic() - began, time.monotonic()
            written, deleted = load_range(conn, schema, spec, path, rows, upto, after)
            log.info(
                "%s versions %s..%s: %d rows read in %.1f s; %d written, %d deleted in %.1f s",
                spec.target,
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


def sync_pipelines(
    settings: Settings, layout: Layout, pipelines: Sequence[str] = (), max_versions: int = 100
) -> dict:
    """Every serving spec of the chosen pipelines (all when none are named)."""
    for name in pipelines:
        layout.registry.pipeline(name)  # an unknown name is refused before any work
    chosen = [
        (p, spec) for p, spec in layout.registry.serving if not pipelines or p.name in pipelines
    ]
    upgrade_layout(settings, layout)
    tables = [sync(settings, spec, layout, max_versions) for _, spec in chosen]
    return {
        "pipelines": sorted({p.name for p, _ in chosen}),
        "tables": tables,
        "rows_inserted": sum(t["rows_inserted"] for t in tables),
        "rows_deleted": sum(t["rows_deleted"] for t in tables),
    }


class SyncFailed(RuntimeError):
    pass


def run(pipeline: str = "", namespace: str = "", max_versions: int = 100) -> dict:
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
        command += ["--pipeline", pipeline] if pipeline else []
        result = subprocess.run(command, check=False)
        if result.returncode != 0:
            raise SyncFailed(f"the serving sync failed (exit {result.returncode}); output above")
        return json.loads(report_file.read_text())


def main(
    pipeline: list[str] = typer.Option([], help="sync only this pipeline (repeatable)"),
    namespace: str = typer.Option("", help="sync an isolated run's lake into its own schema"),
    max_versions: int = typer.Option(100, min=1, help="Delta versions per transaction"),
    report_file: Path | None = typer.Option(None, help="also write the JSON report here"),
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = load_settings()
    try:
        report = sync_pipelines(settings, Layout(settings, namespace), pipeline, max_versions)
    except (InvalidNamespace, RegistryError) as error:
        typer.echo(f"{error}.")
        raise typer.Exit(2) from None
    except psycopg.OperationalError as error:
        typer.echo(f"Postgres is not reachable ({error}): start the platform (make up).")
        raise typer.Exit(2) from None
    print(json.dumps(report), flush=True)
    if report_file:
        report_file.write_text(json.dumps(report))


if __name__ == "__main__":
    typer.run(main)
