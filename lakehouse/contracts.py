"""Record contracts: versioned schemas and validation rules, declared once per pipeline.

Every message carries `schema_version`. A new version may only add optional fields
(`check_compatible` refuses anything else), so a reader on the newest schema parses every
older message; that is the contract a schema registry would enforce.

A rule is data with two readings of the same meaning: a Spark SQL condition that is true
when a record breaks it (the bronze routing in spark/bronze.py) and a Python check (the
producers' self-check and the tests). Both come from one declaration, so they cannot drift.
A null value breaks no rule but `Required`, in SQL as in Python.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

FieldType = Literal["string", "long", "double"]
MIN_EVENT_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_EVENT_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
UNPARSEABLE = "unparseable_or_mistyped"


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


# ---- rules --------------------------------------------------------------------------


def _sql_literal(value: object) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


@dataclass(frozen=True)
class Rule:
    """Base of the rules: `sql` is true when a record breaks the rule, `broken_by` the same
    in Python for a record already known to be well-typed."""

    field: str
    reason: str

    @property
    def sql(self) -> str:
        raise NotImplementedError

    def broken_by(self, record: dict[str, Any]) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class Required(Rule):
    reason: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", self.reason or f"missing_{self.field}")

    @property
    def sql(self) -> str:
        return f"{self.field} IS NULL"

    def broken_by(self, record: dict[str, Any]) -> bool:
        return record.get(self.field) is None


@dataclass(frozen=True)
class OneOf(Rule):
    values: tuple[object, ...] = ()

    @property
    def sql(self) -> str:
        return f"{self.field} NOT IN ({', '.join(_sql_literal(v) for v in self.values)})"

    def broken_by(self, record: dict[str, Any]) -> bool:
        value = record.get(self.field)
        return value is not None and value not in self.values


@dataclass(frozen=True)
class InRange(Rule):
    """low <= value < high."""

    low: float = -math.inf
    high: float = math.inf

    @property
    def sql(self) -> str:
        terms = []
        if self.low != -math.inf:
            terms.append(f"{self.field} < {self.low!r}")
        if self.high != math.inf:
            terms.append(f"{self.field} >= {self.high!r}")
        return " OR ".join(terms) or "false"

    def broken_by(self, record: dict[str, Any]) -> bool:
        value = record.get(self.field)
        return value is not None and not self.low <= value < self.high


@dataclass(frozen=True)
class Above(Rule):
    """value > bound (strictly)."""

    bound: float = 0

    @property
    def sql(self) -> str:
        return f"{self.field} <= {self.bound!r}"

    def broken_by(self, record: dict[str, Any]) -> bool:
        value = record.get(self.field)
        return value is not None and value <= self.bound


@dataclass(frozen=True)
class Matches(Rule):
    """The value contains a match of `pattern` (Spark's RLIKE is a search, as re.search)."""

    pattern: str = ""

    @property
    def sql(self) -> str:
        return f"NOT ({self.field} RLIKE {_sql_literal(self.pattern)})"

    def broken_by(self, record: dict[str, Any]) -> bool:
        value = record.get(self.field)
        return value is not None and re.search(self.pattern, value) is None


# ---- contracts ----------------------------------------------------------------------

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1  # Spark's long: a larger number does not parse
_PYTHON_TYPES: dict[FieldType, tuple[type, ...]] = {
    "string": (str,),
    "long": (int,),
    "double": (int, float),
}


@dataclass(frozen=True)
class Contract:
    """The versions of one record type and its rules, in the order they are checked: the
    required fields, a known schema version, the event time in range, then `rules`."""

    versions: tuple[RecordSchema, ...]
    rules: tuple[Rule, ...] = ()
    event_time_field: str | None = "event_timestamp"  # epoch milliseconds, UTC

    @property
    def name(self) -> str:
        return self.latest.name

    @property
    def latest(self) -> RecordSchema:
        return self.versions[-1]

    @property
    def all_rules(self) -> tuple[Rule, ...]:
        built: list[Rule] = [Required(name) for name in self.latest.required]
        if any(f.name == "schema_version" for f in self.latest.fields):
            versions = tuple(s.version for s in self.versions)
            built.append(OneOf("schema_version", "unknown_schema_version", versions))
        if self.event_time_field:
            built.append(
                InRange(
                    self.event_time_field,
                    f"{self.event_time_field}_out_of_range",
                    MIN_EVENT_MS,
                    MAX_EVENT_MS,
                )
            )
        return (*built, *self.rules)

    def violation(self, record: Any) -> str | None:
        """The reason the record would be quarantined, or None: the Python reading of the
        same rules bronze applies, in the same order."""
        if not isinstance(record, dict):
            return UNPARSEABLE
        for field in self.latest.fields:
            value = record.get(field.name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, _PYTHON_TYPES[field.type])
                or (field.type == "long" and not _LONG_MIN <= value <= _LONG_MAX)
            ):
                return UNPARSEABLE
        for rule in self.all_rules:
            if rule.broken_by(record):
                return rule.reason
        return None
