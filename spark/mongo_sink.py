"""Exactly-once upserts of versioned documents into a MongoDB collection.

Each document carries `_id` and a `version` that only grows per `_id`. A write replaces the
stored document only if it holds an older version, so a replayed micro-batch, or a batch
older than what is stored, changes nothing: the version is the ledger. The query is the
collection's only writer.

Written for what FerretDB (the embedded server) does well: the batch's stored versions are
read first; documents new to the collection go in one `insert_many`, stored ones with an
older version are replaced one version-guarded `update_one` at a time (FerretDB 1.24 never
returned from a multi-statement update here, docs/architecture.md). Should the bulk insert
meet a document stored meanwhile (a second writer), its documents go one at a time too; a
refused one (duplicate key: a newer version is stored) is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from lakehouse.mongo import mongo_client
from lakehouse.settings import Settings

log = logging.getLogger(__name__)
_CHUNK = 1000  # ids per $in lookup and documents per bulk insert
_CLIENTS: dict[str, MongoClient] = {}  # by URI: one connection pool per driver


def collection(settings: Settings, name: str) -> Collection:
    uri = settings.mongo_uri()
    if uri not in _CLIENTS:
        _CLIENTS[uri] = mongo_client(settings, timeout_ms=10_000)
    return _CLIENTS[uri][settings.mongo_database][name]


def _replace_if_older(target: Collection, doc: dict) -> bool:
    try:
        target.update_one(
            {"_id": doc["_id"], "version": {"$lt": doc["version"]}}, {"$set": doc}, upsert=True
        )
    except DuplicateKeyError:
        return False  # a newer version is stored
    return True


def upsert_versioned(target: Collection, docs: Sequence[dict]) -> int:
    """Write the documents newer than the stored ones; returns how many were written."""
    written = 0
    for start in range(0, len(docs), _CHUNK):
        chunk = docs[start : start + _CHUNK]
        stored = {
            d["_id"]: d.get("version", 0)
            for d in target.find({"_id": {"$in": [d["_id"] for d in chunk]}}, {"version": 1})
        }
        new = [d for d in chunk if d["_id"] not in stored]
        older = [d for d in chunk if d["_id"] in stored and d["version"] > stored[d["_id"]]]
        if new:
            try:
                target.insert_many(new, ordered=False)
                written += len(new)
            except BulkWriteError:
                log.warning("%s: a new document was stored meanwhile: one at a time", target.name)
                older += new
        written += sum(_replace_if_older(target, d) for d in older)
    return written
