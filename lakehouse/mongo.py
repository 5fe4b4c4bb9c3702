"""The pymongo client of the platform's MongoDB-wire server (FerretDB embedded, mongod under
compose), for its sinks, the CLI and the dashboard, and the index FerretDB needs to find a
document by `_id` without reading the whole collection."""

from __future__ import annotations

import contextlib
import logging

import psycopg
from psycopg import sql
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import CollectionInvalid

from lakehouse.settings import Settings

log = logging.getLogger(__name__)


def mongo_client(settings: Settings, *, timeout_ms: int = 3000) -> MongoClient:
    """One server, no topology discovery, short timeouts so a stopped server is an error in
    seconds."""
    return MongoClient(
        settings.mongo_uri(),
        directConnection=True,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=max(timeout_ms, 10_000),
        appname="lakehouse",
    )


def is_ferretdb(client: MongoClient) -> bool:
    return "ferretdbVersion" in client.admin.command("buildInfo")


def ferretdb_table(conn: psycopg.Connection, target: Collection) -> str:
    """The Postgres table (in the schema named after the database) that holds a FerretDB
    collection, from FerretDB's own catalogue in that schema."""
    found = conn.execute(
        sql.SQL("SELECT _jsonb->>'table' FROM {}._ferretdb_database_metadata").format(
            sql.Identifier(target.database.name)
        )
        + sql.SQL(" WHERE _jsonb->>'_id' = %s"),
        [target.name],
    ).fetchone()
    if found is None:
        raise RuntimeError(f"FerretDB keeps no table for the collection {target.full_name}")
    return found[0]


def ensure_id_lookup_index(settings: Settings, target: Collection) -> bool:
    """Let FerretDB find a document by `_id` through an index; True when one was made.

    FerretDB 1.24 on PostgreSQL stores a collection as a table of `_jsonb` documents and
    sends a filter on `_id` down as `_jsonb->'_id' @> value`. The btree index it keeps on
    `_jsonb->'_id'` cannot serve `@>`, so every find, update or upsert by `_id` read the
    whole table: 28 ms per lookup at 100,000 documents, growing with the collection. A GIN
    index on the same expression serves it (0.7 ms there). mongod needs nothing: False.
    """
    if not is_ferretdb(target.database.client):
        return False
    with contextlib.suppress(CollectionInvalid):  # raised when it exists
        target.database.create_collection(target.name)  # FerretDB makes its table now
    schema = target.database.name
    with psycopg.connect(settings.postgres_dsn(settings.ferretdb_db), autocommit=True) as conn:
        table = ferretdb_table(conn, target)
        conn.execute(
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {}.{} USING gin ((_jsonb -> '_id'))").format(
                sql.Identifier(f"{table}_id_lookup"), sql.Identifier(schema), sql.Identifier(table)
            )
        )
    log.info("%s: _id lookups index-backed (table %s.%s)", target.full_name, schema, table)
    return True
