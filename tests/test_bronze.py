"""The kit's bronze routing through Spark: the SQL reading of a contract's rules agrees with
its Python reading on generated records, and file sources keep each line's file and number."""

from __future__ import annotations

import json
import math
import random

import pytest
from pyspark.sql import functions as F

from lakehouse.contracts import UNPARSEABLE, Contract, Field, OneOf, RecordSchema
from lakehouse.pipelines.market import REFERENCE, TRADE
from spark import bronze

pytestmark = [pytest.mark.services, pytest.mark.spark]

VALID_TRADE = {
    "schema_version": 2,
    "trade_id": "t",
    "symbol": "ABC",
    "price": 10.5,
    "volume": 3,
    "event_timestamp": 1_767_225_600_000,
    "exchange": "XNAS",
}
ODD_VALUES = [
    *(None, 0, -1, 0.0, -2.5, 1e300, 2**63, "ABC", "abc", "", "x" * 7, True, 7, 2, [1]),
    # Hostile: json.dumps writes NaN, Infinity, -Infinity bare; 10**400 is read as Infinity.
    *(math.nan, math.inf, -math.inf, 10**400, "NaN", "Infinity", -(2**63) - 1, 1e30),
    *(4_102_444_800_000, "x" * 257, "ABC\n", "ABC\r", "'; DROP TABLE trades; --", "\x00"),
    {"a": math.nan},
]


def generated_trades(count: int, seed: int) -> list[dict]:
    """Valid trades with one to three fields replaced by odd values or removed."""
    rng = random.Random(seed)
    records = []
    for i in range(count):
        record = dict(VALID_TRADE, trade_id=f"t{i}")
        for name in rng.sample(sorted(record), rng.randint(0, 3)):
            if rng.random() < 0.2:
                del record[name]
            else:
                record[name] = rng.choice(ODD_VALUES)
        records.append(record)
    return records


def routed_reasons(spark, contract: Contract, values: list[str]) -> list[str | None]:
    rows = [(str(i), value) for i, value in enumerate(values)]
    records = spark.createDataFrame(rows, "raw_key string, raw_value string")
    out = bronze.route(records, contract).select("raw_key", "reason").toPandas()
    by_key = dict(zip(out["raw_key"], out["reason"], strict=True))
    return [by_key[str(i)] for i in range(len(values))]


@pytest.mark.parametrize("seed", [1, 2])
def test_spark_and_python_agree_on_every_generated_trade(spark, seed):
    records = generated_trades(300, seed)
    spark_reasons = routed_reasons(spark, TRADE, [json.dumps(r) for r in records])
    python_reasons = [TRADE.violation(r) for r in records]
    disagreements = [
        (r, s, p) for r, s, p in zip(records, spark_reasons, python_reasons, strict=True) if s != p
    ]
    assert disagreements == []
    # Both outcomes occur, so the comparison covers accepted and refused records.
    assert None in python_reasons and len(set(python_reasons)) > 4


# Hostile trades, each a valid one with a field's value replaced by JSON text (json.dumps
# cannot write 1e400), and the reason Spark and Python both give it.
HOSTILE_TRADES: list[tuple[str, str, str]] = [
    ("price", "NaN", "non_finite_price"),
    ("price", '"NaN"', UNPARSEABLE),  # Spark reads a double NaN of the string: a mistype
    ("price", "Infinity", "non_finite_price"),
    ("price", '"Infinity"', UNPARSEABLE),
    ("price", "-Infinity", "non_finite_price"),
    ("price", '"-INF"', UNPARSEABLE),
    ("price", "1e400", "non_finite_price"),
    ("price", "-1e400", "non_finite_price"),
    ("price", "1" + "0" * 400, "non_finite_price"),
    ("volume", str(2**63), UNPARSEABLE),
    ("volume", str(-(2**63) - 1), UNPARSEABLE),
    ("volume", "1e30", UNPARSEABLE),
    ("volume", "NaN", UNPARSEABLE),
    ("event_timestamp", "4102444800000", "event_timestamp_out_of_range"),  # 2100-01-01
    ("event_timestamp", "-1", "event_timestamp_out_of_range"),
    ("trade_id", "null", "missing_trade_id"),
    ("symbol", "null", "missing_symbol"),
    ("volume", "null", "missing_volume"),
    ("trade_id", "NaN", UNPARSEABLE),  # Spark reads it as the text "NaN" (quoted)
    ("trade_id", "1e400", UNPARSEABLE),
    ("trade_id", '{"a": NaN}', UNPARSEABLE),
    ("trade_id", json.dumps("x" * 257), "trade_id_too_long"),
    ("trade_id", json.dumps("x" * 10_000_000), "trade_id_too_long"),
    ("symbol", json.dumps("A" * 10_000_000), "symbol_too_long"),
    ("exchange", json.dumps("\u00e9" * 257), "exchange_too_long"),
    ("symbol", json.dumps("ABC\n"), "symbol_format"),
    ("symbol", json.dumps("ABC\r"), "symbol_format"),  # Java's $ matched before a final \r
    ("symbol", json.dumps("ABC\u2028"), "symbol_format"),
]
# Accepted as they are and stored literally.
LITERAL_TRADE_IDS = ["'; DROP TABLE trades; --", "a\x00b\x1f\x7f\u2028\\", "\U0001f600" * 256]


def trade_with(field: str, text: str) -> str:
    """A valid trade's JSON with one field's value replaced by `text`."""
    return json.dumps(VALID_TRADE | {field: "@"}).replace('"@"', text)


def test_hostile_values_are_quarantined_as_python_reads_them(spark):
    payloads = [trade_with(field, text) for field, text, _ in HOSTILE_TRADES]
    payloads += [json.dumps(VALID_TRADE | {"trade_id": t}) for t in LITERAL_TRADE_IDS]
    expected = [reason for _, _, reason in HOSTILE_TRADES] + [None] * len(LITERAL_TRADE_IDS)
    assert routed_reasons(spark, TRADE, payloads) == expected
    assert [TRADE.violation(json.loads(p)) for p in payloads] == expected
    # Only the schema's fields are routed: the unknown ones are skipped, hostile or not.
    other_keys = json.dumps(VALID_TRADE | {"Price": "x", "nested": [[{}]]}).replace('"x"', "NaN")
    assert routed_reasons(spark, TRADE, [other_keys]) == [None]


def test_odd_payloads_python_cannot_parse(spark):
    # Spark's JSON reader is laxer than Python's json: these have no Python reading, and are
    # routed to a reason (a value Spark reads, +Infinity, is refused by the contract anyway).
    valid = json.dumps(VALID_TRADE)
    odd = {
        "": "empty_payload",
        " \r\n\t": "empty_payload",
        valid.replace('"', "'"): UNPARSEABLE,  # single quotes: not JSON
        trade_with("price", "+Infinity"): "non_finite_price",
        trade_with("price", "-INF"): "non_finite_price",
        '{"trade_id": ' + "[" * 1001 + "]" * 1001 + "}": UNPARSEABLE,  # deeper than Jackson's 1000
        valid[:-1] + ", }": UNPARSEABLE,
    }
    assert routed_reasons(spark, TRADE, list(odd)) == list(odd.values())
    for payload in odd:
        with pytest.raises((ValueError, RecursionError)):
            json.loads(payload)
    rows = [(b"k", b'{"symbol": "\xff\xfe"}', "t", 0, 0, None, 0)]
    raw = spark.createDataFrame(rows, bronze.KAFKA_SOURCE_SCHEMA)
    routed = bronze.route(bronze.kafka_records(raw), TRADE).collect()
    assert [r.reason for r in routed] == ["missing_schema_version"]  # invalid UTF-8: no crash


def test_stored_values_are_the_sent_text(spark):
    payloads = [json.dumps(VALID_TRADE | {"trade_id": t}) for t in LITERAL_TRADE_IDS]
    rows = [(str(i), p) for i, p in enumerate(payloads)]
    records = spark.createDataFrame(rows, "raw_key string, raw_value string")
    routed = bronze.route(records, TRADE).orderBy(F.col("raw_key").cast("int")).collect()
    assert [r.trade_id for r in routed] == LITERAL_TRADE_IDS
    assert [r.raw_value for r in routed] == payloads


def test_references_and_unparseable_values(spark):
    reference = {
        "schema_version": 1,
        "symbol": "ABC",
        "company_name": "Abc Inc",
        "sector": "Energy",
        "event_timestamp": 1_767_225_600_000,
    }
    values = [
        "{",
        json.dumps({"symbol": "ABC"}),
        json.dumps([1, 2]),
        json.dumps(reference | {"schema_version": 2}),
        json.dumps(reference | {"company_name": "A" * 257}),
        json.dumps(reference),
    ]
    assert routed_reasons(spark, REFERENCE, values) == [
        "unparseable_or_mistyped",
        "missing_schema_version",
        "unparseable_or_mistyped",
        "unknown_schema_version",
        "company_name_too_long",
        None,
    ]


def test_file_lines_keep_file_and_line_and_parse_csv(spark, tmp_path):
    contract = Contract(
        versions=(RecordSchema("row", 1, (Field("id", "string"), Field("kind", "string"))),),
        rules=(OneOf("kind", "unknown_kind", ("a", "b")),),
        event_time_field=None,
    )
    (tmp_path / "one.csv").write_text("id,kind\nr1,a\nr2,zzz\n\nr3,b\n")
    (tmp_path / "two.csv").write_text("id,kind\r\nr4,b\r\n")
    files = spark.read.text(str(tmp_path), wholetext=True).select("value", "_metadata")
    routed = bronze.route(bronze.file_lines(files), contract, fmt="csv").toPandas()
    routed["file"] = routed["source_file"].str.rsplit("/", n=1).str[-1]
    got = sorted(
        zip(routed["file"], routed["source_line"], routed["id"], routed["reason"], strict=True)
    )
    assert got == [
        ("one.csv", 2, "r1", None),
        ("one.csv", 3, "r2", "unknown_kind"),
        ("one.csv", 5, "r3", None),
        ("two.csv", 2, "r4", None),
    ]
