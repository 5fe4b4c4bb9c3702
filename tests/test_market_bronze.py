"""Bronze routing as a pure DataFrame transform: every record lands in exactly one output."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from lakehouse.layout import Layout
from lakehouse.pipelines.market import REFERENCE_TOPIC, TRADES_TOPIC
from spark.jobs.market.bronze import KAFKA_SOURCE_SCHEMA, transform

pytestmark = [pytest.mark.services, pytest.mark.spark]

T0 = 1_767_225_600_000
TRADE = {
    "schema_version": 2,
    "trade_id": "t1",
    "symbol": "ABC",
    "price": 10.5,
    "volume": 3,
    "event_timestamp": T0,
    "exchange": "XNAS",
}
REFERENCE = {
    "schema_version": 1,
    "symbol": "ABC",
    "company_name": "Abc Inc",
    "sector": "Energy",
    "event_timestamp": T0,
}


def kafka_rows(layout: Layout, records: list[tuple[str, object]]) -> list[tuple]:
    rows = []
    for offset, (kind, record) in enumerate(records):
        value = record if isinstance(record, bytes) else json.dumps(record).encode()
        topic = layout.topic(TRADES_TOPIC if kind == "trade" else REFERENCE_TOPIC)
        rows.append((b"ABC", value, topic, 0, offset, datetime.now(UTC), 0))
    return rows


def test_each_record_goes_to_exactly_one_output_with_its_reason(spark, platform):
    layout = Layout(platform, "unit")
    v1_trade = {k: v for k, v in TRADE.items() if k != "exchange"} | {"schema_version": 1}
    future_field = TRADE | {"trade_id": "t3", "venue_flags": "new optional field"}
    cases = [
        ("trade", TRADE),
        ("trade", v1_trade | {"trade_id": "t2"}),  # the previous version still parses
        ("trade", future_field),  # an unknown new field is ignored, not fatal
        ("reference", REFERENCE),
        ("trade", b'{"symbol": "AB'),
        ("trade", TRADE | {"price": "ten"}),
        ("trade", {k: v for k, v in TRADE.items() if k != "price"}),
        ("trade", TRADE | {"price": 0}),
        ("trade", TRADE | {"volume": -5}),
        ("trade", TRADE | {"symbol": "abc!"}),
        ("trade", TRADE | {"schema_version": 7}),
        ("reference", REFERENCE | {"event_timestamp": 12}),
    ]
    empty_payload = (b"ABC", None, layout.topic(REFERENCE_TOPIC), 0, 99, datetime.now(UTC), 0)
    raw = spark.createDataFrame([*kafka_rows(layout, cases), empty_payload], KAFKA_SOURCE_SCHEMA)
    out = transform(raw, layout)
    trades = out.trades.toPandas()
    references = out.references.toPandas()
    quarantine = out.quarantine.toPandas().sort_values("kafka_offset")

    assert sorted(trades["trade_id"]) == ["t1", "t2", "t3"]
    assert trades.set_index("trade_id").loc["t2", "exchange"] is None
    assert list(references["company_name"]) == ["Abc Inc"]
    assert str(trades["event_date"].iloc[0]) == "2026-01-01"
    assert list(quarantine["reason"]) == [
        "unparseable_or_mistyped",
        "unparseable_or_mistyped",
        "missing_price",
        "price_not_positive",
        "volume_negative",
        "symbol_format",
        "unknown_schema_version",
        "event_timestamp_out_of_range",
        "empty_payload",
    ]
    assert quarantine["raw_value"].iloc[0] == '{"symbol": "AB'
    assert len(trades) + len(references) + len(quarantine) == raw.count()
