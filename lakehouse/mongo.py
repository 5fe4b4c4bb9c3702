"""The pymongo client of the platform's MongoDB-wire server (FerretDB embedded, mongod under
compose), for its sinks, the CLI and the dashboard."""

from __future__ import annotations

from pymongo import MongoClient

from lakehouse.settings import Settings


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
