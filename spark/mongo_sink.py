"""Exactly-once upserts of versioned documents into a MongoDB collection.

Each document carries `_id` and a `version` that starts at 1 and only grows per `_id`. A
write replaces the stored document only if it holds an older version, so a replayed
micro-batch, or a batch older than what is stored, changes nothing: the version is the
ledger. The query is the collection's only writer.

Written for what FerretDB (the embedded server) does well, and never reading the batch's
stored versions first (FerretDB answers `$in` by reading the whole collection):
- a version-1 document is new to the collection unless its batch is a replay, so those go
  in one unordered `insert_many` per chunk; one refused as a duplicate is stored already;
- every other document is written by one version-guarded upsert. FerretDB 1.24 never
  returned from a multi-statement update here (docs/architecture.md), hence one at a time.
  On FerretDB these lookups by `_id` use the index lakehouse.mongo.ensure_id_lookup_index
  makes when the driver first opens the collection.
A guarded upsert refused with a duplicate key means a newer version is stored: skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from lakehouse.mongo import ensure_id_lookup_index, mongo_client
from lakehouse.settings import Settings

log = logging.getLogger(__name__)
_CHUNK = 1000  # documents per bulk insert, and per progress call of the one-at-a-time path
_CLIENTS: dict[str, MongoClient] = {}  # by URI: one connection pool per driver
DUPLICATE_KEY = 11000
_PREPARED: set[tuple[str, str]] = set()  # (URI, collection) whose index is made


def collection(settings: Settings, name: str) -> Collection:
    uri = settings.mongo_uri()
    if uri not in _CLIENTS:
        _CLIENTS[uri] = mongo_client(settings, timeout_ms=10_000)
    target = _CLIENTS[uri][settings.mongo_database][name]
    if (uri, name) not in _PREPARED:
        ensure_id_lookup_index(settings, target)
        _PREPARED.add((uri, name))
    return target


def _replace_if_older(target: Collection, doc: dict) -> bool:
    try:
        target.update_one(
            {"_id": doc["_id"], "version": {"$lt": doc["version"]}}, {"$set": doc}, upsert=True
        )
    except DuplicateKeyError:
        return False  # this version or a newer one is stored
    return True


def _stored_by_a_refused_bulk(
    error: BulkWriteError, chunk: Sequence[dict], one_by_one: list[dict]
) -> int:
    """How many of an unordered insert_many's documents went in. Those refused as
    duplicates are stored already (version 1 is the lowest); any other error is raised.
    Should the server have stopped at its first error, the documents it may not have tried
    join `one_by_one` (the ones it stored are then refused there, so none counts twice)."""
    details = error.details
    refused = {e["index"] for e in details["writeErrors"] if e["code"] == DUPLICATE_KEY}
    if len(refused) < len(details["writeErrors"]):
        raise error
    inserted = details.get("nInserted", 0)
    if inserted + len(refused) < len(chunk):
        one_by_one.extend(d for i, d in enumerate(chunk) if i not in refused)
    return inserted


def _chunks(docs: Sequence[dict]) -> list[Sequence[dict]]:
    return [docs[start : start + _CHUNK] for start in range(0, len(docs), _CHUNK)]


def upsert_versioned(
    target: Collection, docs: Sequence[dict], on_progress: Callable[[], None] = lambda: None
) -> int:
    """Write the documents newer than the stored ones; returns how many were written.
    `on_progress` is called after each chunk (a long batch tells its supervisor it moves)."""
    written = 0
    one_by_one = [d for d in docs if d["version"] != 1]
    for chunk in _chunks([d for d in docs if d["version"] == 1]):
        try:
            target.insert_many(chunk, ordered=False)
            written += len(chunk)
        except BulkWriteError as error:
            inserted = _stored_by_a_refused_bulk(error, chunk, one_by_one)
            written += inserted
            log.info(
                "%s: a replayed batch: %d of %d new documents were stored already",
                target.name,
                len(chunk) - inserted,
                len(chunk),
            )
        on_progress()
    for chunk in _chunks(one_by_one):
        written += sum(_replace_if_older(target, d) for d in chunk)
        on_progress()
    return written
