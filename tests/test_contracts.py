"""Contracts: schema evolution rules, the Spark schema, and the Python reading of the rules
(the market's contracts as the example)."""

import itertools

import pytest

from lakehouse.contracts import (
    Above,
    Field,
    IncompatibleSchemaError,
    InRange,
    Matches,
    OneOf,
    RecordSchema,
    Required,
    check_compatible,
)
from lakehouse.pipelines.market import REFERENCE, TRADE

TRADE_SCHEMAS, REFERENCE_SCHEMAS = TRADE.versions, REFERENCE.versions


def python_violation(record, kind):
    return (TRADE if kind == "trade" else REFERENCE).violation(record)


def good_trade(**changes):
    record = {
        "schema_version": 2,
        "trade_id": "t-1",
        "symbol": "ABC",
        "price": 12.5,
        "volume": 10,
        "event_timestamp": 1_767_225_600_000,
        "exchange": "XNAS",
    }
    record.update(changes)
    return record


@pytest.mark.parametrize("schemas", [TRADE_SCHEMAS, REFERENCE_SCHEMAS])
def test_every_version_reads_the_previous_one(schemas):
    for old, new in itertools.pairwise(schemas):
        check_compatible(old, new)
        assert new.version == old.version + 1


def test_incompatible_changes_are_refused():
    v1 = TRADE_SCHEMAS[0]
    removed = RecordSchema("trade", 2, v1.fields[:-1])
    retyped = RecordSchema(
        "trade", 2, tuple(Field(f.name, "string") if f.name == "volume" else f for f in v1.fields)
    )
    new_required = v1.evolve(Field("venue", "string", required=True))
    for bad, words in [(removed, "removes"), (retyped, "changes"), (new_required, "required")]:
        with pytest.raises(IncompatibleSchemaError, match=words):
            check_compatible(v1, bad)


def test_spark_schema_has_every_field_nullable():
    pytest.importorskip("pyspark")
    from spark.bronze import spark_schema

    struct = spark_schema(TRADE.latest)
    assert [f.name for f in struct.fields] == [f.name for f in TRADE.latest.fields]
    assert all(f.nullable for f in struct.fields)
    assert struct["price"].dataType.simpleString() == "double"


def test_a_version_1_trade_is_still_valid():
    v1 = good_trade(schema_version=1)
    del v1["exchange"]
    assert python_violation(v1, "trade") is None
    assert python_violation(good_trade(), "trade") is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"price": None}, "missing_price"),
        ({"trade_id": None}, "missing_trade_id"),
        ({"price": 0.0}, "price_not_positive"),
        ({"price": -3.0}, "price_not_positive"),
        ({"volume": -1}, "volume_negative"),
        ({"symbol": "abc"}, "symbol_format"),
        ({"symbol": "TOOLONG"}, "symbol_format"),
        ({"schema_version": 9}, "unknown_schema_version"),
        ({"event_timestamp": 5}, "event_timestamp_out_of_range"),
        ({"price": "12"}, "unparseable_or_mistyped"),
        ({"volume": 1.5}, "unparseable_or_mistyped"),
        ({"volume": 2**63}, "unparseable_or_mistyped"),
        ({"price": True}, "unparseable_or_mistyped"),
    ],
)
def test_python_violation_names_the_reason(changes, reason):
    assert python_violation(good_trade(**changes), "trade") == reason


def test_rules_name_their_field_and_reasons_are_unique():
    for contract in (TRADE, REFERENCE):
        reasons = [r.reason for r in contract.all_rules]
        assert len(reasons) == len(set(reasons))
        for rule in contract.all_rules:
            if rule.reason.startswith("missing_"):
                assert rule.sql == f"{rule.reason.removeprefix('missing_')} IS NULL"


@pytest.mark.parametrize(
    ("rule", "sql", "broken", "kept"),
    [
        (Required("a"), "a IS NULL", {"a": None}, {"a": 0}),
        (OneOf("a", "bad_a", ("x", "it's")), "a NOT IN ('x', 'it''s')", {"a": "y"}, {"a": "it's"}),
        (InRange("a", "a_range", 0, 10), "a < 0 OR a >= 10", {"a": 10}, {"a": 0}),
        (InRange("a", "a_negative", low=0), "a < 0", {"a": -1}, {"a": 10**9}),
        (Above("a", "a_not_positive", 0), "a <= 0", {"a": 0}, {"a": 0.5}),
        (Matches("a", "a_format", "^[A-Z]+$"), "NOT (a RLIKE '^[A-Z]+$')", {"a": "a"}, {"a": "A"}),
    ],
)
def test_each_rule_reads_the_same_in_sql_and_python(rule, sql, broken, kept):
    assert rule.sql == sql
    assert rule.broken_by(broken) and not rule.broken_by(kept)
    # A null breaks no rule but Required, in SQL (comparisons with null are not true) too.
    assert rule.broken_by({"a": None}) == isinstance(rule, Required)
