"""Arrow rows into Postgres with COPY, a chunk of CSV at a time (the serving sync and the
pipelines' after-load steps)."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence

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


def copy_rows(conn: psycopg.Connection, table: str, columns: Sequence[str], rows: pa.Table) -> None:
    with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT csv)") as copy:
        for chunk in csv_chunks(rows.select(list(columns))):
            copy.write(chunk)
