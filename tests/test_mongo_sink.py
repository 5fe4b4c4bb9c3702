"""The MongoDB sink on the test platform's FerretDB: version-guarded writes that a replayed
batch cannot double, without reading the stored versions first, and lookups by `_id` that
use an index instead of reading the whole collection."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from pymongo.errors import BulkWriteError

from lakehouse.mongo import ensure_id_lookup_index, ferretdb_table
from spark.mongo_sink import _stored_by_a_refused_bulk, collection, upsert_versioned


@pytest.fixture
def target(platform):
    name = f"sink_{uuid.uuid4().hex[:8]}"
    written_to = collection(platform, name)  # makes the collection and its index
    yield written_to
    written_to.drop()


def docs(versions: dict[str, int]) -> list[dict]:
    return [{"_id": key, "version": v, "status": f"s{v}"} for key, v in versions.items()]


def stored(target) -> dict[str, tuple[int, str]]:
    return {d["_id"]: (d["version"], d["status"]) for d in target.find()}


def test_new_documents_go_in_and_a_replay_changes_nothing(target):
    batch = docs({"a": 1, "b": 1, "c": 1})
    assert upsert_versioned(target, batch) == 3
    assert upsert_versioned(target, batch) == 0  # the batch replayed
    assert stored(target) == {k: (1, "s1") for k in "abc"}


def test_a_replay_after_a_partial_write_adds_only_the_missing(target):
    upsert_versioned(target, docs({"a": 1}))
    calls = []
    written = upsert_versioned(
        target, docs({"a": 1, "b": 1, "c": 1}), on_progress=lambda: calls.append(1)
    )
    assert written == 2
    assert stored(target) == {k: (1, "s1") for k in "abc"}
    assert calls  # the sink reports its progress


def test_only_a_newer_version_replaces_a_stored_one(target):
    upsert_versioned(target, docs({"a": 1, "b": 1}))
    assert upsert_versioned(target, docs({"a": 3, "b": 2})) == 2
    # an older batch replayed after newer ones; "c" first seen at version 2 (inserted)
    assert upsert_versioned(target, docs({"a": 2, "b": 1, "c": 2})) == 1
    assert stored(target) == {"a": (3, "s3"), "b": (2, "s2"), "c": (2, "s2")}


def test_lookups_by_id_use_an_index(platform, target):
    """FerretDB sends `{_id: value}` to Postgres as `_jsonb->'_id' @> value`: the plan of
    that statement on the collection's table must use the sink's index, not a scan."""
    upsert_versioned(target, docs({f"k{i:05d}": 1 for i in range(2000)}))
    assert ensure_id_lookup_index(platform, target)  # made already: a second call is harmless
    with psycopg.connect(platform.postgres_dsn(platform.ferretdb_db)) as conn:
        table = ferretdb_table(conn, target)
        conn.execute(f'ANALYZE "{platform.mongo_database}"."{table}"')
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                f'EXPLAIN SELECT _jsonb FROM "{platform.mongo_database}"."{table}" '
                """WHERE _jsonb->'_id' @> '"k00042"'"""
            )
        )
    assert f"{table}_id_lookup" in plan, plan
    assert target.find_one({"_id": "k00042"})["version"] == 1


def refused_bulk(inserted: int, errors: dict[int, int]) -> BulkWriteError:
    return BulkWriteError(
        {
            "nInserted": inserted,
            "writeErrors": [{"index": i, "code": code} for i, code in errors.items()],
        }
    )


def test_a_bulk_that_stopped_early_leaves_the_untried_documents_to_the_guarded_path():
    chunk = docs({k: 1 for k in "abcd"})
    later: list[dict] = []
    # mongod and FerretDB go on after a duplicate: nothing left to do
    assert _stored_by_a_refused_bulk(refused_bulk(3, {1: 11000}), chunk, later) == 3
    assert later == []
    # a server that stopped at the duplicate: c and d may be untried (a was stored)
    assert _stored_by_a_refused_bulk(refused_bulk(1, {1: 11000}), chunk, later) == 1
    assert [d["_id"] for d in later] == ["a", "c", "d"]
    with pytest.raises(BulkWriteError):  # anything but a duplicate is not the sink's to hide
        _stored_by_a_refused_bulk(refused_bulk(2, {1: 11000, 2: 2}), chunk, [])
