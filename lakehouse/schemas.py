"""Message schemas of the market topics, defined once for the producer, the jobs and tests.

Every message carries `schema_version`. A new version may only add optional fields
(`check_compatible` refuses anything else), so a reader on the newest schema parses every
older message; that is the contract a schema registry would enforce (seed 003).
Validation rules are data: each is a Spark SQL condition that is true when a record is bad,
with its reason; `python_violation` applies the same checks to a Python dict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

FieldType = Literal["string", "long", "double"]
SYMBOL_PATTERN = "^[A-Z]{1,5}$"
MIN_EVENT_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_EVENT_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z


class IncompatibleSchemaError(ValueError):
    """A new schema version cannot read messages of the previous one."""


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    required: bool = True


@dataclass(frozen=True)
class RecordSchema:
    name: str
    version: int
    fields: tuple[Field, ...]

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.required)

    def evolve(self, *added: Field) -> RecordSchema:
        return RecordSchema(self.name, self.version + 1, self.fields + added)


_TRADE_V1 = RecordSchema(
    "trade",
    1,
    (
        Field("schema_version", "long"),
        Field("trade_id", "string"),
        Field("symbol", "string"),
        Field("price", "double"),
        Field("volume", "long"),
        Field("event_timestamp", "long"),  # epoch milliseconds, UTC
    ),
)
TRADE_SCHEMAS: tuple[RecordSchema, ...] = (
    _TRADE_V1,
    _TRADE_V1.evolve(Field("exchange", "string", required=False)),
)
REFERENCE_SCHEMAS: tuple[RecordSchema, ...] = (
    RecordSchema(
        "reference",
        1,
        (
            Field("schema_version", "long"),
            Field("symbol", "string"),
            Field("company_name", "string"),
            Field("sector", "string"),
            Field("event_timestamp", "long"),
        ),
    ),
)
LATEST_TRADE = TRADE_SCHEMAS[-1]
LATEST_REFERENCE = REFERENCE_SCHEMAS[-1]


def check_compatible(old: RecordSchema, new: RecordSchema) -> None:
    """Raise IncompatibleSchemaError unless a reader on `new` can read `old` messages."""
    old_fields = {f.name: f for f in old.fields}
    new_fields = {f.name: f for f in new.fields}
    for name, field in old_fields.items():
        if name not in new_fields:
            raise IncompatibleSchemaError(
                f"{new.name} v{new.version} removes field {name!r} that v{old.version} has."
            )
        if new_fields[name].type != field.type:
            raise IncompatibleSchemaError(
                f"{new.name} v{new.version} changes {name!r} from {field.type} to "
                f"{new_fields[name].type}."
            )
    for name, field in new_fields.items():
        if name not in old_fields and field.required:
            raise IncompatibleSchemaError(
                f"{new.name} v{new.version} adds required field {name!r}: new fields must "
                f"be optional, or v{old.version} messages fail to parse."
            )


def spark_schema(schema: RecordSchema):
    """The StructType to parse a message with: every field nullable, validation decides."""
    from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

    types = {"string": StringType(), "long": LongType(), "double": DoubleType()}
    return StructType([StructField(f.name, types[f.type], True) for f in schema.fields])


@dataclass(frozen=True)
class Rule:
    reason: str
    condition: str  # Spark SQL, true when the record breaks the rule


def _rules(schemas: tuple[RecordSchema, ...], extra: tuple[Rule, ...]) -> tuple[Rule, ...]:
    latest = schemas[-1]
    versions = ", ".join(str(s.version) for s in schemas)
    return (
        *(Rule(f"missing_{name}", f"{name} IS NULL") for name in latest.required),
        Rule("unknown_schema_version", f"schema_version NOT IN ({versions})"),
        Rule(
            "event_timestamp_out_of_range",
            f"event_timestamp < {MIN_EVENT_MS} OR event_timestamp >= {MAX_EVENT_MS}",
        ),
        Rule("symbol_format", f"NOT (symbol RLIKE '{SYMBOL_PATTERN}')"),
        *extra,
    )


TRADE_RULES = _rules(
    TRADE_SCHEMAS,
    (
        Rule("price_not_positive", "price <= 0"),
        Rule("volume_negative", "volume < 0"),
    ),
)
REFERENCE_RULES = _rules(REFERENCE_SCHEMAS, ())

_SYMBOL = re.compile(SYMBOL_PATTERN)
_PYTHON_TYPES: dict[FieldType, tuple[type, ...]] = {
    "string": (str,),
    "long": (int,),
    "double": (int, float),
}


def python_violation(record: Any, kind: Literal["trade", "reference"]) -> str | None:
    """The reason the record would be quarantined, or None (same order as the rules)."""
    schemas = TRADE_SCHEMAS if kind == "trade" else REFERENCE_SCHEMAS
    latest = schemas[-1]
    if not isinstance(record, dict):
        return "unparseable_or_mistyped"
    for field in latest.fields:
        value = record.get(field.name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, _PYTHON_TYPES[field.type])
        ):
            return "unparseable_or_mistyped"
    for name in latest.required:
        if record.get(name) is None:
            return f"missing_{name}"
    if record["schema_version"] not in {s.version for s in schemas}:
        return "unknown_schema_version"
    if not MIN_EVENT_MS <= record["event_timestamp"] < MAX_EVENT_MS:
        return "event_timestamp_out_of_range"
    if not _SYMBOL.match(record["symbol"]):
        return "symbol_format"
    if kind == "trade":
        if record["price"] <= 0:
            return "price_not_positive"
        if record["volume"] < 0:
            return "volume_negative"
    return None
