"""Record contracts: versioned schemas and validation rules, declared once per pipeline.

Every message carries `schema_version`. A new version may only add optional fields
(`check_compatible` refuses anything else), so a reader on the newest schema parses every
older message; that is the contract a schema registry would enforce.

A rule is data with two readings of the same meaning: a Spark SQL condition that is true
when a record breaks it (the bronze routing in spark/bronze.py) and a Python check (the
producers' self-check and the tests). Both come from one declaration, so they cannot drift.
A null value breaks no rule but `Required`, in SQL as in Python.

Besides its own rules, every contract refuses what no pipeline can use: a double that is not
a finite number (NaN, Infinity: Spark's JSON reader takes them, and one NaN price poisons every
average after it) and a string longer than its field's `max_length` (a 10 MB id would break a
Postgres index downstream).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

FieldType = Literal["string", "long", "double"]
MIN_EVENT_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_EVENT_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
UNPARSEABLE = "unparseable_or_mistyped"
# Characters in a string field unless the field says otherwise: a key or an indexed text column
# in Postgres stays far below btree's limit of about 2700 bytes per entry (4 bytes a character).
DEFAULT_MAX_LENGTH = 256


class IncompatibleSchemaError(ValueError):
    """A new schema version cannot read messages of the previous one."""


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    required: bool = True
    max_length: int = DEFAULT_MAX_LENGTH  # strings only: characters, longer is refused


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
        if field.type == "string" and new_fields[name].max_length < field.max_length:
            raise IncompatibleSchemaError(
                f"{new.name} v{new.version} shortens {name!r} from {field.max_length} to "
                f"{new_fields[name].max_length} characters: longer v{old.version} values "
                "would be refused."
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
        # Spark's string literals read backslash escapes: a regex's \d must reach it as \\d.
        return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    return repr(value)


@dataclass(frozen=True)
class Rule:
    """Base of the rules: `sql` is true when a record breaks the rule, `broken_by` the same
    in Python for a record already known to be well-typed."""

    field: str
    reason: str
    # For rules whose reason may be left empty: the reason it then takes, from the field.
    default_reason: ClassVar[str] = ""

    def __post_init__(self) -> None:
        if not self.reason and self.default_reason:
            object.__setattr__(self, "reason", self.default_reason.format(field=self.field))

    @property
    def sql(self) -> str:
        raise NotImplementedError

    def broken_by(self, record: dict[str, Any]) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class Required(Rule):
    reason: str = ""
    default_reason: ClassVar[str] = "missing_{field}"

    @property
    def sql(self) -> str:
        return f"{self.field} IS NULL"

    def broken_by(self, record: dict[str, Any]) -> bool:
        return record.get(self.field) is None


@dataclass(frozen=True)
class Finite(Rule):
    """A double is a number: not NaN, Infinity or -Infinity. Spark's JSON reader makes them of
    NaN and Infinity (bare or as strings) and of a number too large for a double (1e400), and
    NaN compares false with every bound, so no range rule would catch it."""

    reason: str = ""
    default_reason: ClassVar[str] = "non_finite_{field}"

    @property
    def sql(self) -> str:
        return f"isnan({self.field}) OR abs({self.field}) = double('Infinity')"

    def broken_by(self, record: dict[str, Any]) -> bool:
        value = record.get(self.field)
        if value is None:
            return False
        try:
            return not math.isfinite(value)
        except OverflowError:  # an int beyond any double: Spark reads it as Infinity
            return True


@dataclass(frozen=True)
class MaxLength(Rule):
    """At most `limit` characters (code points, in Spark's length() as in Python's len())."""

    reason: str = ""
    limit: int = DEFAULT_MAX_LENGTH
    default_reason: ClassVar[str] = "{field}_too_long"

    @property
    def sql(self) -> str:
        return f"length({self.field}) > {self.limit}"

    def broken_by(self, record: dict[str, Any]) -> bool:
        value = record.get(self.field)
        return value is not None and len(value) > self.limit


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
    r"""The value contains a match of `pattern` (Spark's RLIKE is a search, as re.search),
    read alike by Java's and Python's regex engines: a final `$` is the very end of the value
    (a plain `$` also matches before a final \n, and in Java before a final \r, \u0085 or
    \u2028 too: "ABC\r" would pass as a symbol in Spark only), only \n ends a line elsewhere
    (Java's UNIX_LINES) and \d, \w, \s are ASCII (Python's re.ASCII, Java's default)."""

    pattern: str = ""

    @property
    def sql(self) -> str:
        java_pattern = "(?d)" + self._to_the_end(r"\z")
        return f"NOT ({self.field} RLIKE {_sql_literal(java_pattern)})"

    def broken_by(self, record: dict[str, Any]) -> bool:
        value = record.get(self.field)
        return value is not None and re.search(self._to_the_end(r"\Z"), value, re.ASCII) is None

    def _to_the_end(self, end_of_input: str) -> str:
        """The pattern with a final unescaped `$` replaced by the engine's end of input."""
        body = self.pattern[:-1]
        escaped = (len(body) - len(body.rstrip("\\"))) % 2 == 1
        if self.pattern.endswith("$") and not escaped:
            return body + end_of_input
        return self.pattern


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
    required fields, a known schema version, the event time in range, every double finite,
    every string within its field's max_length, then `rules`."""

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
        built += [Finite(f.name) for f in self.latest.fields if f.type == "double"]
        built += [
            MaxLength(f.name, limit=f.max_length) for f in self.latest.fields if f.type == "string"
        ]
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
