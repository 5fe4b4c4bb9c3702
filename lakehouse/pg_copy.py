"""Arrow rows into Postgres with COPY, a chunk of CSV at a time (the serving sync and the
pipelines' after-load steps)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv


def csv_chunks(rows: pa.Table, chunk_rows: int = 65_536) -> Iterator[bytes]:
    """The rows as CSV without a header, a chunk at a time: COPY takes each while the next
    is encoded, so encoding overlaps with Postgres' ingestion."""
    options = pacsv.WriteOptions(include_header=False)
    for batch in rows.to_batches(max_chunksize=chunk_rows):
        buffer = io.BytesIO()
        pacsv.write_csv(batch, buffer, write_options=options)
        yield buffer.getvalue()


def utc_wall_clock(rows: pa.Table) -> pa.Table:
    """Time-zone-aware timestamp columns as naive UTC ones: Arrow's CSV writer formats an
    aware timestamp about 30 times slower (a zone conversion per value)."""
    fields = [
        pa.field(f.name, pa.timestamp(f.type.unit))
        if pa.types.is_timestamp(f.type) and f.type.tz
        else f
        for f in rows.schema
    ]
    schema = pa.schema(fields)
    return rows if schema.equals(rows.schema) else rows.cast(schema)


def copy_rows(conn: psycopg.Connection, table: str, columns: Sequence[str], rows: pa.Table) -> None:
    copy_batches(conn, table, columns, [rows])


def copy_batches(
    conn: psycopg.Connection, table: str, columns: Sequence[str], parts: Iterable[pa.Table]
) -> int:
    """COPY every part (tables or record batches with these columns) in one statement;
    returns the rows copied."""
    utc = not conn.autocommit
    if utc:  # naive times are read in the session's zone: UTC for this transaction only
        conn.execute("SET LOCAL TimeZone = 'UTC'")
    copied = 0
    with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT csv)") as copy:
        for part in parts:
            rows = pa.table(part).select(list(columns))
            for chunk in csv_chunks(utc_wall_clock(rows) if utc else rows):
                copy.write(chunk)
            copied += rows.num_rows
    return copied
