"""Parsing and cleaning one dropped CSV file: plain Python, no Spark (unit-tested alone).

A file is either read, and then every data row is accepted or refused with a reason, or it
cannot be read at all (not UTF-8, NUL bytes, no header, a different header, broken
quoting), and then none of its rows is loaded and the whole file is moved aside with the
reason. So for each read file: data rows = accepted + refused. Blank lines are not rows.

The rules, first that holds: the row has 6 fields (`wrong_column_count`), none of them
empty after trimming (`missing_value`), no id or type longer than 256 characters
(`value_too_long`: Postgres could not index such a key, and one row must not fail a
batch), `event_type` is one of the four (case matters: `unknown_event_type`),
`product_price` is a finite number (`malformed_price`) above 0 (`non_positive_price`),
`event_timestamp` is ISO 8601 (`malformed_timestamp`; without an offset it is UTC).
Accepted rows have their ids trimmed and upper-cased, the price rounded to cents.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lakehouse.pipelines.csv import (
    COLUMNS,
    EVENT_TYPES,
    MALFORMED_PRICE,
    MALFORMED_TIMESTAMP,
    MAX_TEXT_LENGTH,
    MISSING_VALUE,
    NON_POSITIVE_PRICE,
    UNKNOWN_EVENT_TYPE,
    VALUE_TOO_LONG,
    WRONG_COLUMN_COUNT,
)

# numeric(12, 2) in Postgres: a larger price would fail the whole batch's COPY.
MAX_PRICE = 10_000_000_000.0
_EVENT_TYPES = frozenset(EVENT_TYPES)
_HEADER = [c.lower() for c in COLUMNS]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Refused:
    line_number: int
    reason: str
    raw_line: str


@dataclass
class ParsedFile:
    path: str
    # None when the file was read; else why it could not be (the file is moved aside).
    unreadable: str | None = None
    # Accepted rows, column by column (as Arrow wants them): line_number, event_id, user_id,
    # product_id, event_type, product_price, event_time_us (epoch microseconds, UTC).
    accepted: dict[str, list] = field(
        default_factory=lambda: {
            "line_number": [],
            "event_id": [],
            "user_id": [],
            "product_id": [],
            "event_type": [],
            "product_price": [],
            "event_time_us": [],
        }
    )
    refused: list[Refused] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.accepted["line_number"]) + len(self.refused)


def parse_timestamp_us(text: str) -> int | None:
    """Epoch microseconds of an ISO 8601 time (naive: UTC), None when it is not one."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def check_row(fields: list[str]) -> tuple[str | None, tuple | None]:
    """(reason, None) for a refused row, (None, cleaned values) for an accepted one."""
    if len(fields) != len(COLUMNS):
        return WRONG_COLUMN_COUNT, None
    event_id, user_id, product_id, event_type, price_text, time_text = (f.strip() for f in fields)
    if not (event_id and user_id and product_id and event_type and price_text and time_text):
        return MISSING_VALUE, None
    if max(len(event_id), len(user_id), len(product_id), len(event_type)) > MAX_TEXT_LENGTH:
        return VALUE_TOO_LONG, None  # a key this long could not be indexed
    if event_type not in _EVENT_TYPES:
        return UNKNOWN_EVENT_TYPE, None
    try:
        price = float(price_text)
    except ValueError:
        return MALFORMED_PRICE, None
    if not math.isfinite(price) or abs(price) >= MAX_PRICE:
        return MALFORMED_PRICE, None
    price = round(price, 2)
    if price <= 0:
        return NON_POSITIVE_PRICE, None
    time_us = parse_timestamp_us(time_text)
    if time_us is None:
        return MALFORMED_TIMESTAMP, None
    return None, (event_id, user_id.upper(), product_id.upper(), event_type, price, time_us)


class _Lines:
    """The file's lines as csv.reader takes them, remembering each for the raw record."""

    def __init__(self, text: str):
        self.lines = io.StringIO(text, newline="").readlines()

    def __iter__(self) -> Iterator[str]:
        return iter(self.lines)

    def raw(self, first: int, last: int) -> str:
        """Lines first..last (1-based, inclusive) without the final line break."""
        return "".join(self.lines[first - 1 : last]).rstrip("\r\n")


def parse_file(path: str, content: bytes) -> ParsedFile:
    parsed = ParsedFile(path)
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        parsed.unreadable = f"not UTF-8 text (byte {error.start} cannot be decoded)"
        return parsed
    if "\x00" in text:
        parsed.unreadable = "contains NUL bytes: a binary file, not CSV text"
        return parsed
    lines = _Lines(text)
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            parsed.unreadable = "empty file: no header line"
            return parsed
        if [h.strip().lower() for h in header] != _HEADER:
            parsed.unreadable = (
                f"the first line is not the header {','.join(COLUMNS)}: "
                f"{lines.raw(1, reader.line_num)[:200]!r}"
            )
            return parsed
        accepted = parsed.accepted
        previous = reader.line_num
        for fields in reader:
            first, previous = previous + 1, reader.line_num
            if not fields:
                continue  # a blank line is not a row
            reason, values = check_row(fields)
            if reason is not None:
                parsed.refused.append(Refused(first, reason, lines.raw(first, previous)))
                continue
            accepted["line_number"].append(first)
            for column, value in zip(_ACCEPTED_VALUES, values, strict=True):
                accepted[column].append(value)
    except csv.Error as error:
        parsed.unreadable = f"broken CSV at line {reader.line_num}: {error}"
        parsed.refused.clear()
        for column in parsed.accepted.values():
            column.clear()
    return parsed


_ACCEPTED_VALUES = (
    "event_id",
    "user_id",
    "product_id",
    "event_type",
    "product_price",
    "event_time_us",
)
