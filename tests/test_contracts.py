"""Contracts: schema evolution rules, the Spark schema, and the Python reading of the rules
(the market's contracts as the example; every registered contract where a test says so)."""

from __future__ import annotations

import functools
import itertools
import json
import math
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import Phase, find, settings
from hypothesis import strategies as st

from lakehouse.contracts import (
    Above,
    Contract,
    Field,
    Finite,
    IncompatibleSchemaError,
    InRange,
    Matches,
    MaxLength,
    OneOf,
    RecordSchema,
    Required,
    check_compatible,
)
from lakehouse.pipelines.market import REFERENCE, TRADE
from lakehouse.registry import load_registry

TRADE_SCHEMAS, REFERENCE_SCHEMAS = TRADE.versions, REFERENCE.versions
VALID_EVENT_MS = 1_767_225_600_000  # 2026-01-01
_FIRST = settings(phases=[Phase.generate], max_examples=1000, database=None)


def registered_contracts() -> list[Contract]:
    """Every contract of the registry's pipelines. A pipeline's module declares its contracts
    beside its Pipeline (docs/architecture.md, "Adding a pipeline"), so these are the
    Contract objects of every module that holds one of the registry's pipelines: a pipeline
    added later is covered without a change here."""
    pipelines = {id(p) for p in load_registry().pipelines}
    found: dict[int, Contract] = {}
    for module in list(sys.modules.values()):
        names = getattr(module, "__dict__", None) or {}
        if any(id(value) in pipelines for value in names.values()):
            found |= {id(v): v for v in names.values() if isinstance(v, Contract)}
    return sorted(found.values(), key=lambda c: c.name)


CONTRACTS = registered_contracts()


def _candidates(contract: Contract, field: Field) -> Iterator[Any]:
    """Values to try for a field: the ones its rules name first, then plain ones, then a
    text its pattern takes (drawn by hypothesis, first found, no shrinking: fast)."""
    if field.name == contract.event_time_field:
        yield VALID_EVENT_MS
    rules = [r for r in contract.all_rules if r.field == field.name]
    if field.type == "string":
        yield from (v for r in rules if isinstance(r, OneOf) for v in r.values)
        yield from ("x", "ABC")
        yield from (_text_matching(r) for r in rules if isinstance(r, Matches))
    else:
        yield from ([1, 0, 10, 1000] if field.type == "long" else [1.0, 12.5, 1000.0])


@functools.cache
def _text_matching(rule: Matches) -> str:
    return find(
        st.from_regex(rule.pattern), lambda s: not rule.broken_by({rule.field: s}), settings=_FIRST
    )


def valid_record(contract: Contract, schema: RecordSchema | None = None) -> dict[str, Any]:
    """A message of `schema` (default: the latest) that breaks none of the contract's rules,
    built from the schema's fields alone."""
    schema = schema or contract.latest
    record: dict[str, Any] = {}
    for field in schema.fields:
        rules = [r for r in contract.all_rules if r.field == field.name]
        version = [schema.version] if field.name == "schema_version" else []
        for value in itertools.chain(version, _candidates(contract, field)):
            if not any(rule.broken_by({field.name: value}) for rule in rules):
                record[field.name] = value
                break
        else:
            raise AssertionError(
                f"no valid value for {contract.name}.{field.name}: teach _candidates its rules"
            )
    return record


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


def test_every_pipeline_fed_by_kafka_declares_a_contract():
    # The collection above works: each pipeline with topics has its contracts found.
    names = {c.name for c in CONTRACTS}
    assert {"trade", "reference", "activity_event", "order_event"} <= names
    assert len(CONTRACTS) >= sum(1 for p in load_registry().pipelines if p.topics)


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.name)
def test_every_version_reads_the_previous_one(contract):
    checks = 0
    for old, new in itertools.pairwise(contract.versions):
        check_compatible(old, new)
        assert new.version == old.version + 1
        checks += 1
    # A message of every version, the only one included, passes the latest version's rules
    # (as bronze reads it: through JSON).
    for schema in contract.versions:
        message = json.loads(json.dumps(valid_record(contract, schema)))
        assert set(message) == {f.name for f in schema.fields}
        assert contract.violation(message) is None, (schema.version, message)
        checks += 1
    assert checks >= len(contract.versions) > 0


def test_incompatible_changes_are_refused():
    v1 = TRADE_SCHEMAS[0]
    removed = RecordSchema("trade", 2, v1.fields[:-1])
    retyped = RecordSchema(
        "trade", 2, tuple(Field(f.name, "string") if f.name == "volume" else f for f in v1.fields)
    )
    new_required = v1.evolve(Field("venue", "string", required=True))
    shortened = RecordSchema(
        "trade", 2, tuple(Field(f.name, f.type, max_length=8) for f in v1.fields)
    )
    for bad, words in [
        (removed, "removes"),
        (retyped, "changes"),
        (new_required, "required"),
        (shortened, "shortens"),
    ]:
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
        # Python's json reads NaN, Infinity and 1e400 as floats, as Spark does for a double.
        ({"price": math.nan}, "non_finite_price"),
        ({"price": math.inf}, "non_finite_price"),
        ({"price": -math.inf}, "non_finite_price"),
        ({"price": 10**400}, "non_finite_price"),  # an int no double holds: Infinity
        ({"price": "NaN"}, "unparseable_or_mistyped"),  # a string, whatever it says
        ({"price": 1e-400}, "price_not_positive"),  # underflows to 0.0
        ({"trade_id": "x" * 256}, None),
        ({"trade_id": "x" * 257}, "trade_id_too_long"),
        ({"trade_id": "\U0001f600" * 256}, None),  # characters, not bytes
        ({"exchange": "x" * 257}, "exchange_too_long"),  # optional fields too
        ({"symbol": "A" * 10_000_000}, "symbol_too_long"),  # before the pattern's search
        ({"trade_id": "'; DROP TABLE trades; --\x00\n"}, None),  # text, kept as it is
        ({"symbol": "ABC\n"}, "symbol_format"),
        ({"symbol": "ABC\r"}, "symbol_format"),
        ({"event_timestamp": 4_102_444_800_000}, "event_timestamp_out_of_range"),  # 2100
        ({"event_timestamp": -1}, "event_timestamp_out_of_range"),
        ({"volume": -(2**63) - 1}, "unparseable_or_mistyped"),
        ({"volume": 1e30}, "unparseable_or_mistyped"),
    ],
)
def test_python_violation_names_the_reason(changes, reason):
    assert python_violation(good_trade(**changes), "trade") == reason


def test_rules_name_their_field_and_reasons_are_unique():
    for contract in CONTRACTS:
        reasons = [r.reason for r in contract.all_rules]
        assert len(reasons) == len(set(reasons))
        names = {f.name for f in contract.latest.fields}
        for rule in contract.all_rules:
            assert rule.field in names, (contract.name, rule)
            if rule.reason.startswith("missing_"):
                assert rule.sql == f"{rule.reason.removeprefix('missing_')} IS NULL"


def test_every_double_must_be_finite_and_every_string_bounded():
    for contract in CONTRACTS:
        rules = set(contract.all_rules)
        for field in contract.latest.fields:
            if field.type == "double":
                assert Finite(field.name) in rules
            if field.type == "string":
                assert MaxLength(field.name, limit=field.max_length) in rules


@pytest.mark.parametrize(
    ("rule", "sql", "broken", "kept"),
    [
        (Required("a"), "a IS NULL", {"a": None}, {"a": 0}),
        (OneOf("a", "bad_a", ("x", "it's")), "a NOT IN ('x', 'it''s')", {"a": "y"}, {"a": "it's"}),
        (InRange("a", "a_range", 0, 10), "a < 0 OR a >= 10", {"a": 10}, {"a": 0}),
        (InRange("a", "a_negative", low=0), "a < 0", {"a": -1}, {"a": 10**9}),
        (Above("a", "a_not_positive", 0), "a <= 0", {"a": 0}, {"a": 0.5}),
        (
            Matches("a", "a_format", "^[A-Z]+$"),
            "NOT (a RLIKE '(?d)^[A-Z]+\\\\z')",
            {"a": "A\n"},
            {"a": "A"},
        ),
        (Matches("a", "a_end", r"x\$"), r"NOT (a RLIKE '(?d)x\\$')", {"a": "x"}, {"a": "x$"}),
        (
            Matches("a", "a_digits", r"^\d+$"),
            r"NOT (a RLIKE '(?d)^\\d+\\z')",
            {"a": "\u0663"},
            {"a": "3"},
        ),
        (Finite("a"), "isnan(a) OR abs(a) = double('Infinity')", {"a": math.nan}, {"a": 1e308}),
        (MaxLength("a", limit=2), "length(a) > 2", {"a": "abc"}, {"a": "ab"}),
    ],
)
def test_each_rule_reads_the_same_in_sql_and_python(rule, sql, broken, kept):
    assert rule.sql == sql
    assert rule.broken_by(broken) and not rule.broken_by(kept)
    # A null breaks no rule but Required, in SQL (comparisons with null are not true) too.
    assert rule.broken_by({"a": None}) == isinstance(rule, Required)
