"""The serving sync's pure steps on Arrow tables (the market's trades as the example):
change-feed reduction and a range's bars."""

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from lakehouse.pg_copy import csv_chunks
from lakehouse.pipelines.market import PIPELINE
from lakehouse.pipelines.market_bars import range_bars
from lakehouse.serving_sync import last_change_per_key

SPEC = PIPELINE.serving[0]
COLUMNS = SPEC.columns


def last_change_per_trade(feed: pa.Table) -> pa.Table:
    return last_change_per_key(feed, SPEC)


T0 = datetime(2026, 1, 1, 9, 30, tzinfo=UTC)


def changes(*rows: tuple) -> pa.Table:
    """Rows of (trade_id, seconds after T0, price, volume, change type, commit version)."""
    return pa.table(
        {
            "trade_id": [r[0] for r in rows],
            "symbol": ["AAA"] * len(rows),
            "event_time": pa.array(
                [T0.timestamp() * 1e6 + r[1] * 1e6 for r in rows], pa.int64()
            ).cast(pa.timestamp("us", tz="UTC")),
            "price": [float(r[2]) for r in rows],
            "volume": [r[3] for r in rows],
            "company_name": ["Aaa Holdings"] * len(rows),
            "sector": ["Energy"] * len(rows),
            "_change_type": [r[4] for r in rows],
            "_commit_version": pa.array([r[5] for r in rows], pa.uint64()),
        }
    )


def by_id(table: pa.Table) -> dict[str, dict]:
    return {row["trade_id"]: row for row in table.to_pylist()}


def test_new_trades_only_pass_through_unchanged():
    feed = changes(("a", 1, 10, 5, "insert", 3), ("b", 2, 11, 5, "insert", 4))
    rows = last_change_per_trade(feed)
    assert rows.column_names == [*COLUMNS, "deleted"]
    assert rows.num_rows == 2 and not any(rows.column("deleted").to_pylist())


def test_each_trade_keeps_its_last_change():
    feed = changes(
        ("kept", 1, 10, 5, "insert", 3),
        # A replay in version 4 replaces "replaced": delete then insert in one version.
        ("replaced", 2, 11, 5, "insert", 3),
        ("replaced", 2, 11, 5, "delete", 4),
        ("replaced", 2, 12, 5, "insert", 4),
        # Deleted in a later version than its insert.
        ("gone", 3, 13, 5, "insert", 3),
        ("gone", 3, 13, 5, "delete", 5),
        # A pre-image never counts.
        ("updated", 4, 14, 5, "update_preimage", 6),
        ("updated", 4, 15, 5, "update_postimage", 6),
    )
    rows = by_id(last_change_per_trade(feed))
    assert set(rows) == {"kept", "replaced", "gone", "updated"}
    assert rows["replaced"]["price"] == 12 and not rows["replaced"]["deleted"]
    assert rows["gone"]["deleted"]
    assert rows["updated"]["price"] == 15 and not rows["updated"]["deleted"]


def test_a_ranges_bars_break_ties_by_trade_id():
    trades = last_change_per_trade(
        changes(
            ("t2", 0, 20, 1, "insert", 1),  # same time as t1: t1 opens (smaller id)
            ("t1", 0, 10, 3, "insert", 1),
            ("t3", 59, 30, 2, "insert", 1),  # the minute's close
            ("t4", 60, 40, 1, "insert", 1),  # next minute
        )
    )
    bars = {(b["symbol"], b["minute"]): b for b in range_bars(trades).to_pylist()}
    first = bars[("AAA", T0)]
    assert (first["open"], first["high"], first["low"], first["close"]) == (10, 30, 10, 30)
    assert first["volume"] == 6 and first["trade_count"] == 3
    assert first["vwap"] == pytest.approx((20 * 1 + 10 * 3 + 30 * 2) / 6)
    assert bars[("AAA", datetime(2026, 1, 1, 9, 31, tzinfo=UTC))]["trade_count"] == 1


def test_csv_chunks_cover_every_row_once_without_header():
    rows = last_change_per_trade(
        changes(*[(f"t{i}", i, 10 + i, 1, "insert", 1) for i in range(10)])
    )
    lines = b"".join(csv_chunks(rows.select(list(COLUMNS)), chunk_rows=3)).splitlines()
    assert len(lines) == 10
    assert sorted(line.split(b",")[0].strip(b'"') for line in lines) == sorted(
        f"t{i}".encode() for i in range(10)
    )


def test_a_composite_key_reduces_per_key():
    from lakehouse.kit import ServingSpec

    spec = ServingSpec("t", "t", key=("trade_id", "symbol"), columns=COLUMNS)
    feed = changes(("a", 1, 10, 5, "insert", 3), ("a", 1, 11, 5, "insert", 4))
    rows = last_change_per_key(feed, spec)
    assert rows.num_rows == 1 and rows.column("price").to_pylist() == [11]
