"""`lakehouse mongo ...`: look into the platform's MongoDB database (FerretDB embedded).

With mongosh on PATH, `lakehouse mongo` (or `lakehouse mongo shell -- ARGS`) replaces itself
with mongosh on the platform's database. Without it, and for scripts, the built-in commands
use pymongo: `find` prints documents as relaxed Extended JSON, one per line, `count` a
number, `collections` the collection names. Every failure a user can meet (server down, bad
filter, refused query) is a MongoToolError with one sentence.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from bson import json_util
from bson.errors import InvalidBSON
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

from lakehouse.mongo import mongo_client
from lakehouse.settings import Settings


class MongoToolError(Exception):
    """One sentence for the user; the CLI prints it and exits with code 2."""


def unreachable_message(settings: Settings) -> str:
    return f"MongoDB is not reachable at {settings.mongo_uri()}: start the platform (make up)."


def database_uri(settings: Settings) -> str:
    """The platform's database as a connection string (what mongosh is given)."""
    return settings.mongo_uri() + settings.mongo_database


def find_mongosh(which: Callable[[str], str | None] = shutil.which) -> str | None:
    return which("mongosh")


def mongosh_argv(program: str, settings: Settings, extra_args: Sequence[str] = ()) -> list[str]:
    return [program, database_uri(settings), *extra_args]


def missing_mongosh_message(settings: Settings) -> str:
    return (
        f"mongosh is not on PATH: install it, use `lakehouse mongo find|count|collections`, "
        f"or connect any MongoDB client to {database_uri(settings)}."
    )


def parse_filter(text: str) -> dict[str, Any]:
    """A query filter from (Extended) JSON text, e.g. '{"status": "paid"}'."""
    try:
        value = json_util.loads(text) if text.strip() else {}
    except (ValueError, TypeError, InvalidBSON) as error:
        raise MongoToolError(f"--filter is not valid JSON ({error}).") from None
    if not isinstance(value, dict):
        raise MongoToolError(f"--filter must be a JSON object, not {type(value).__name__}.")
    return value


def to_json_line(document: dict[str, Any]) -> str:
    return json_util.dumps(document, json_options=json_util.RELAXED_JSON_OPTIONS)


class _Session:
    """A connected client on the platform's database; any pymongo failure becomes one
    sentence."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client: MongoClient = mongo_client(settings, timeout_ms=3000)

    def __enter__(self) -> Database:
        try:
            self.client.admin.command("ping")
        except ConnectionFailure:
            self.client.close()
            raise MongoToolError(unreachable_message(self.settings)) from None
        return self.client[self.settings.mongo_database]

    def __exit__(self, kind, error, traceback) -> None:
        self.client.close()
        if isinstance(error, ConnectionFailure):
            raise MongoToolError(unreachable_message(self.settings)) from None
        if isinstance(error, OperationFailure):
            reason = (error.details or {}).get("errmsg") or str(error)
            raise MongoToolError(f"MongoDB refused the request: {reason}") from None
        if isinstance(error, PyMongoError):
            raise MongoToolError(f"MongoDB request failed: {error}") from None


def check_reachable(settings: Settings) -> None:
    with _Session(settings):
        pass


def find(
    settings: Settings, collection: str, query: dict[str, Any], limit: int, out: TextIO
) -> int:
    """Write the matching documents (at most `limit`, 0: all) as JSON lines, in `_id`
    order; returns how many were written."""
    written = 0
    with _Session(settings) as db:
        for document in db[collection].find(query, limit=limit, sort=[("_id", 1)]):
            out.write(to_json_line(document) + "\n")
            written += 1
    return written


def count(settings: Settings, collection: str, query: dict[str, Any]) -> int:
    with _Session(settings) as db:
        return db[collection].count_documents(query)


def collections(settings: Settings) -> list[str]:
    with _Session(settings) as db:
        return sorted(db.list_collection_names())
