"""Exactly-once upserts of a micro-batch into a Postgres serving table.

One transaction per (sink, batch): the batch's row in `sink_batches` (the serving schema's
ledger, migration serving_0002), a COPY of the rows into a staging table, and
`INSERT ... ON CONFLICT (key) DO UPDATE` into the target. A batch that foreachBatch runs again
after a crash finds its ledger row and changes nothing; a batch that crashed before its
commit left nothing behind. The upsert makes each micro-batch's newer aggregate replace the
older one (windows in update mode), the ledger makes the whole batch apply once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg
import pyarrow as pa

from lakehouse.migrations import validate_schema
from lakehouse.pg_copy import copy_rows
from lakehouse.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpsertTarget:
    table: str  # in the serving schema
    key: tuple[str, ...]
    columns: tuple[str, ...]  # every column written, the key among them
    # A column that only grows per key (a version): a row replaces the stored one only when
    # its value is higher, so an older state never overwrites a newer one.
    newer_by: str | None = None
    # (column, SQL expression) pairs that merge a stored row (the table's name) with the new
    # one (EXCLUDED) instead of replacing the column: partial aggregates of each batch.
    merges: tuple[tuple[str, str], ...] = ()
    # Run after the upsert in the same transaction ({schema} and {table} filled in), e.g. to
    # drop rows past a retention.
    prune: str | None = None

    def statement(self, schema: str, stage: str) -> str:
        columns = ", ".join(self.columns)
        merged = dict(self.merges)
        updates = ", ".join(
            f"{c} = {merged.get(c, f'EXCLUDED.{c}')}" for c in self.columns if c not in self.key
        )
        guard = (
            f" WHERE {self.table}.{self.newer_by} < EXCLUDED.{self.newer_by}"
            if self.newer_by
            else ""
        )
        return (
            f'INSERT INTO "{schema}".{self.table} ({columns}) SELECT {columns} FROM {stage} '
            f"ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET {updates}, updated_at = now()"
            + guard
        )


def record_batch(
    conn: psycopg.Connection, schema: str, sink: str, batch_id: int, rows: int
) -> bool:
    """The batch's row in the ledger, in the caller's transaction; False when it was there
    already (the batch was applied before: the caller applies nothing)."""
    first_time = conn.execute(
        f'INSERT INTO "{schema}".sink_batches (sink, batch_id, rows) VALUES (%s, %s, %s) '
        "ON CONFLICT DO NOTHING RETURNING batch_id",
        (sink, batch_id, rows),
    ).fetchone()
    return first_time is not None


def upsert_batch(
    settings: Settings,
    schema: str,
    target: UpsertTarget,
    rows: pa.Table,
    sink: str,
    batch_id: int,
) -> bool:
    """Apply one micro-batch; False when the ledger says it was applied before."""
    schema = validate_schema(schema)
    stage = f"stage_{target.table}"
    with psycopg.connect(settings.postgres_dsn(), connect_timeout=10) as conn:
        if not record_batch(conn, schema, sink, batch_id, rows.num_rows):
            log.info("%s batch %d was applied before: skipped", sink, batch_id)
            return False
        if rows.num_rows:
            conn.execute(
                f'CREATE TEMP TABLE {stage} (LIKE "{schema}".{target.table} INCLUDING DEFAULTS) '
                "ON COMMIT DROP"
            )
            copy_rows(conn, stage, target.columns, rows)
            conn.execute(target.statement(schema, stage))
        if target.prune:
            conn.execute(target.prune.format(schema=f'"{schema}"', table=target.table))
    return True
