"""Hostile input through the real bronze parse (spark/bronze.py `route`), for every contract
the registry declares: hypothesis streams of valid records mutated with hostile values, wrong
types, nested objects, duplicate keys, raw text, invalid JSON and empty payloads.

Each record gets exactly one outcome, the one the contract's Python reading gives it, an
accepted record holds only finite doubles and bounded strings, and a quarantined one keeps
its payload as sent.

Python's json and Spark's JSON reader (Jackson) differ on some text; the agreement is checked
on what Python reads, except:
- a key repeated in one object: both keep the last value, but Spark calls the record corrupt
  when an earlier one does not fit the field's type (Python never sees it): there Spark may
  say unparseable_or_mistyped where Python reads the last value;
- text Python cannot parse has no Python reading; Spark refuses it (a blank payload as
  empty_payload) unless it is valid with Jackson's leniencies: the numbers +Infinity, +INF
  and -INF (refused as non_finite_* in a double field, skipped under an unknown key), and
  text after the first JSON value (ignored);
- Jackson's limits (a number over 1000 characters, a key over 50000, nesting over 1000)
  make a record corrupt that Python reads: none are generated.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pyspark.sql import SparkSession

from lakehouse.contracts import UNPARSEABLE, Contract, Field
from spark import bronze
from tests.test_contracts import CONTRACTS, valid_record

pytestmark = [pytest.mark.services, pytest.mark.spark]


class Raw(str):
    """JSON text put in a payload as it is: tokens json.dumps cannot write."""


# Values that broke or nearly broke a contract, for any field (a wrong type is hostile too).
HOSTILE: list[Any] = [
    *(math.nan, math.inf, -math.inf, Raw("1e400"), Raw("-1e400"), Raw("1" + "0" * 400)),
    *(Raw("+Infinity"), Raw("-INF"), "NaN", "Infinity", "-Infinity", "+INF", "nan", ""),
    *(2**63, -(2**63) - 1, 2**63 - 1, -(2**63), 1e30, 0, -1, -0.0, Raw("1e-400"), 0.5),
    *(4_102_444_800_000, 4_102_444_799_999, 946_684_800_000, 946_684_799_999, -1),
    *("x" * 256, "x" * 257, "y" * 20_000, "\u00e9" * 300, "\U0001f600" * 256, "\U0001f600" * 257),
    *("'; DROP TABLE trades; --", 'Robert"); DROP TABLE students;--', "\x00", "a\x00b"),
    *("\x1f\x7f", "ABC\n", "ABC\r", "ABC\u2028", "/\n", Raw('"\\ud800"'), "\\", "%s%n"),
    *(True, False, None, [], {}, [1, "a"], {"a": {"b": math.nan}}, "12", "1.5", "true"),
    *("null", "{}", "[1]", "ABC", "/", "page_view", "session_start", "order_created"),
]
EXTRA_KEYS = ["Price", "PRICE", "unknown", "", "_unparseable", "raw_value", "reason"]
JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def value_for(field: Field) -> st.SearchStrategy[Any]:
    """Hostile values, random JSON, and values of the field's type that may be valid."""
    typed = {
        "string": st.text(max_size=300),
        "long": st.integers(min_value=-(2**64), max_value=2**64),
        "double": st.floats(),
    }[field.type]
    return st.one_of(st.sampled_from(HOSTILE), typed, JSON_VALUES)


def to_json(pairs: list[tuple[str, Any]], *, ascii_only: bool) -> str:
    """An object's text from its (key, value) pairs, a key repeated as often as given."""

    def text(value: Any) -> str:
        return str(value) if isinstance(value, Raw) else json.dumps(value, ensure_ascii=ascii_only)

    return "{" + ", ".join(f"{json.dumps(k)}: {text(v)}" for k, v in pairs) + "}"


@st.composite
def mutated_record(draw: st.DrawFn, contract: Contract) -> str:
    """A valid message of some version with up to four fields changed, removed, repeated or
    added."""
    schema = draw(st.sampled_from(contract.versions))
    pairs = list(valid_record(contract, schema).items())
    fields = {f.name: f for f in contract.latest.fields}
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(sorted(fields)))
        action = draw(st.sampled_from(["set", "set", "set", "delete", "repeat", "extra"]))
        if action == "set":
            value = draw(value_for(fields[name]))
            pairs = [(k, value if k == name else v) for k, v in pairs] or [(name, value)]
        elif action == "delete":
            pairs = [(k, v) for k, v in pairs if k != name]
        elif action == "repeat":
            pairs.append((name, draw(value_for(fields[name]))))
        else:
            pairs.append((draw(st.sampled_from(EXTRA_KEYS)), draw(st.sampled_from(HOSTILE))))
    return to_json(pairs, ascii_only=draw(st.booleans()))


def payloads(contract: Contract) -> st.SearchStrategy[str]:
    valid = st.sampled_from(contract.versions).map(lambda s: json.dumps(valid_record(contract, s)))
    broken = st.one_of(
        st.text(max_size=50),  # random text
        st.sampled_from(["", " ", "\n", "null", "[]", "{}", "{", "}", '"x"', "0", "NaN"]),
        st.tuples(valid, st.integers(1, 60)).map(lambda t: t[0][: t[1]]),  # cut short
        valid.map(lambda v: v.replace('"', "'")),  # single quotes
        valid.map(lambda v: v + " trailing"),  # text after the object
        valid.map(lambda v: f"[{v}]"),  # an array of one record
        JSON_VALUES.map(json.dumps),  # other JSON
    )
    # Mostly mutated records (one_of would favour the short texts).
    kinds = {"mutated": mutated_record(contract), "valid": valid, "broken": broken}
    return st.sampled_from(["mutated"] * 7 + ["valid", "broken", "broken"]).flatmap(kinds.get)


def python_reading(contract: Contract, payload: str) -> tuple[bool, bool, str | None]:
    """(Python parses it, it repeats a key in an object, the contract's Python reason)."""
    repeated = False

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        repeated |= len({k for k, _ in pairs}) < len(pairs)
        return dict(pairs)

    try:
        record = json.loads(payload, object_pairs_hook=pairs_hook)
    except (ValueError, RecursionError):
        return False, False, None
    return True, repeated, contract.violation(record)


# Numbers Jackson reads and Python's json does not, as the ones Python reads.
_JACKSON_ONLY = {"+Infinity": "Infinity", "+INF": "Infinity", "-INF": "-Infinity"}


def valid_as_jackson_reads_it(contract: Contract, payload: str) -> bool:
    """Python refuses the payload but Spark may accept it: valid once read with Jackson's
    leniencies (+Infinity, +INF, -INF as numbers, text after the first JSON value ignored)."""
    lax = re.sub(r"(?<=[:,\[] )(\+Infinity|[+-]INF)\b", lambda t: _JACKSON_ONLY[t[0]], payload)
    try:
        record, _ = json.JSONDecoder().raw_decode(lax.lstrip())
    except (ValueError, RecursionError):
        return False
    return contract.violation(record) is None


def route_batch(spark: SparkSession, contract: Contract, batch: list[str]) -> tuple[list, list]:
    """The batch as Kafka records through bronze: (accepted rows, quarantined rows)."""
    rows = [(b"k", p.encode(), "t", 0, i, None, 0) for i, p in enumerate(batch)]
    raw = spark.createDataFrame(rows, bronze.KAFKA_SOURCE_SCHEMA)
    routed = bronze.route(bronze.kafka_records(raw), contract).cache()
    try:
        accepted = bronze.accepted(routed).collect()
        quarantined = bronze.quarantined(routed, ("kafka_offset",)).collect()
    finally:
        routed.unpersist()
    return accepted, quarantined


def check_batch(spark: SparkSession, contract: Contract, batch: list[str]) -> None:
    accepted, quarantined = route_batch(spark, contract, batch)
    # Exactly one outcome per record, none lost, none doubled.
    outcome = {r.kafka_offset: None for r in accepted}
    for row in quarantined:
        assert row.kafka_offset not in outcome, row.kafka_offset
        outcome[row.kafka_offset] = row.reason
    assert len(accepted) + len(quarantined) == len(batch)
    assert sorted(outcome) == list(range(len(batch)))

    disagreements, compared = [], 0
    for offset, payload in enumerate(batch):
        parsed, repeated, expected = python_reading(contract, payload)
        got = outcome[offset]
        if parsed:
            # A repeated key (module docstring): the last value's reason, or Spark's corrupt.
            allowed = {expected, UNPARSEABLE} if repeated else {expected}
            compared += 1
            if got not in allowed:
                disagreements.append((payload[:300], got, allowed))
        elif got is None and not valid_as_jackson_reads_it(contract, payload):
            disagreements.append((payload[:300], got, "refused"))
    assert disagreements == [], disagreements[:10]
    # Not vacuous: most records compared, both outcomes seen.
    assert compared >= len(batch) // 2 and accepted and quarantined, (compared, len(accepted))

    fields = contract.latest.fields
    for row in accepted:
        for field in fields:
            value = row[field.name]
            if value is not None and field.type == "double":
                assert math.isfinite(value), (field.name, value)
            if value is not None and field.type == "string":
                assert len(value) <= field.max_length, (field.name, len(value))
    for row in quarantined:
        payload = batch[row.kafka_offset]
        assert row.raw_value == payload and row.raw_value.encode() == payload.encode()


# Every listed payload in every batch, so each run covers them whatever hypothesis draws.
def fixed_payloads(contract: Contract) -> list[str]:
    record = valid_record(contract)
    out = [json.dumps(record), "", "{", "[]"]
    for field in contract.latest.fields:
        for value in HOSTILE:
            out.append(
                to_json(
                    [(k, value if k == field.name else v) for k, v in record.items()],
                    ascii_only=False,
                )
            )
        out.append(json.dumps({k: v for k, v in record.items() if k != field.name}))
    return out


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.name)
def test_hostile_streams_get_one_outcome_each_as_python_reads_them(
    spark: SparkSession, contract: Contract
) -> None:
    fixed = fixed_payloads(contract)

    # Few Spark calls: a few large batches; no shrinking (each step would be a Spark job),
    # a failure lists its records instead.
    @settings(
        max_examples=3,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(payloads(contract), min_size=150, max_size=250))
    def check(batch: list[str]) -> None:
        check_batch(spark, contract, fixed + batch)

    check()
