"""Message schemas: evolution rules, Spark schema, and the Python side of validation."""

import itertools

import pytest

from lakehouse.schemas import (
    LATEST_TRADE,
    REFERENCE_RULES,
    REFERENCE_SCHEMAS,
    TRADE_RULES,
    TRADE_SCHEMAS,
    Field,
    IncompatibleSchemaError,
    RecordSchema,
    check_compatible,
    python_violation,
    spark_schema,
)


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
    struct = spark_schema(LATEST_TRADE)
    assert [f.name for f in struct.fields] == [f.name for f in LATEST_TRADE.fields]
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
    ],
)
def test_python_violation_names_the_reason(changes, reason):
    assert python_violation(good_trade(**changes), "trade") == reason


def test_rules_name_their_field_and_reasons_are_unique():
    for rules in (TRADE_RULES, REFERENCE_RULES):
        reasons = [r.reason for r in rules]
        assert len(reasons) == len(set(reasons))
        for rule in rules:
            if rule.reason.startswith("missing_"):
                assert rule.condition == f"{rule.reason.removeprefix('missing_')} IS NULL"
