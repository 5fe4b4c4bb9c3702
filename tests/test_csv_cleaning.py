"""The CSV drops pipeline's parsing and cleaning, plain Python (spark/jobs/csv/cleaning.py)."""

from __future__ import annotations

import pytest

from lakehouse.pipelines.csv import (
    COLUMNS,
    MALFORMED_PRICE,
    MALFORMED_TIMESTAMP,
    MISSING_VALUE,
    NON_POSITIVE_PRICE,
    UNKNOWN_EVENT_TYPE,
    WRONG_COLUMN_COUNT,
)
from spark.jobs.csv.cleaning import check_row, parse_file, parse_timestamp_us

HEADER = ",".join(COLUMNS)
GOOD = "e1,U1,P1,view,9.99,2026-01-01T00:00:00.123Z"
JAN_1_US = 1_767_225_600_000_000


def test_an_accepted_row_has_its_ids_trimmed_and_upper_cased_and_its_time_in_utc():
    reason, values = check_row([" e1 ", "  u00042 ", "p0123", " purchase", "12.345", "2026-01-01"])
    assert reason is None
    assert values == ("e1", "U00042", "P0123", "purchase", 12.35, JAN_1_US)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (["e1", "U1", "P1", "view", "9.99"], WRONG_COLUMN_COUNT),
        (["e1", "U1", "P1", "view", "9.99", "2026-01-01", "extra"], WRONG_COLUMN_COUNT),
        (["e1", "U1", "", "view", "9.99", "2026-01-01"], MISSING_VALUE),
        (["e1", "U1", "P1", "view", "9.99", "   "], MISSING_VALUE),
        (["", "U1", "P1", "view", "9.99", "2026-01-01"], MISSING_VALUE),
        (["e1", "U1", "P1", "checkout", "9.99", "2026-01-01"], UNKNOWN_EVENT_TYPE),
        (["e1", "U1", "P1", "VIEW", "9.99", "2026-01-01"], UNKNOWN_EVENT_TYPE),
        (["e1", "U1", "P1", "view", "ten", "2026-01-01"], MALFORMED_PRICE),
        (["e1", "U1", "P1", "view", "nan", "2026-01-01"], MALFORMED_PRICE),
        (["e1", "U1", "P1", "view", "inf", "2026-01-01"], MALFORMED_PRICE),
        (["e1", "U1", "P1", "view", "1e12", "2026-01-01"], MALFORMED_PRICE),
        (["e1", "U1", "P1", "view", "0.00", "2026-01-01"], NON_POSITIVE_PRICE),
        (["e1", "U1", "P1", "view", "0.004", "2026-01-01"], NON_POSITIVE_PRICE),  # 0.00 in cents
        (["e1", "U1", "P1", "view", "-3.50", "2026-01-01"], NON_POSITIVE_PRICE),
        (["e1", "U1", "P1", "view", "9.99", "2026-13-45T25:61:00Z"], MALFORMED_TIMESTAMP),
        (["e1", "U1", "P1", "view", "9.99", "yesterday"], MALFORMED_TIMESTAMP),
        (["e1", "U1", "P1", "view", "9.99", "01/02/2026 10:00"], MALFORMED_TIMESTAMP),
    ],
)
def test_a_refused_row_gets_its_reason(fields, reason):
    assert check_row(fields) == (reason, None)


def test_timestamps_with_an_offset_are_converted_to_utc():
    assert parse_timestamp_us("2026-01-01T01:00:00+01:00") == JAN_1_US
    assert parse_timestamp_us("2026-01-01 00:00:00.000001") == JAN_1_US + 1
    assert parse_timestamp_us("1767225600") is None


def test_every_data_row_is_accepted_or_refused_with_its_line_number_and_raw_text():
    text = "\n".join(
        [
            HEADER,
            GOOD,
            "",  # a blank line is not a row
            "e2,U1,P1,wishlist,1.00,2026-01-01T00:00:00Z",
            'e3,U2,P2,add_to_cart,"1,5",2026-01-01T00:00:00Z',
            "e4,U2,P2,view,2.00",
            "e5,u3 ,p3,purchase,3.00,2026-01-01T00:00:01Z",
        ]
    )
    parsed = parse_file("file:/in/a.csv", (text + "\n").encode())
    assert parsed.unreadable is None
    assert parsed.rows == 5
    assert parsed.accepted["line_number"] == [2, 7]
    assert parsed.accepted["user_id"] == ["U1", "U3"]
    assert [(r.line_number, r.reason) for r in parsed.refused] == [
        (4, UNKNOWN_EVENT_TYPE),
        (5, MALFORMED_PRICE),
        (6, WRONG_COLUMN_COUNT),
    ]
    assert parsed.refused[1].raw_line == 'e3,U2,P2,add_to_cart,"1,5",2026-01-01T00:00:00Z'


def test_a_quoted_field_across_lines_keeps_the_line_numbers_of_later_rows():
    text = f'{HEADER}\r\ne1,U1,P1,"view\r\nmore",1.00,2026-01-01\r\n{GOOD.replace("e1", "e2")}\r\n'
    parsed = parse_file("f.csv", text.encode())
    assert [(r.line_number, r.reason) for r in parsed.refused] == [(2, UNKNOWN_EVENT_TYPE)]
    assert parsed.refused[0].raw_line == 'e1,U1,P1,"view\r\nmore",1.00,2026-01-01'
    assert parsed.accepted["line_number"] == [4]


def test_a_header_in_another_case_with_a_byte_order_mark_is_read():
    text = "\ufeff" + HEADER.upper() + "\n" + GOOD + "\n"
    assert parse_file("f.csv", text.encode()).accepted["event_id"] == ["e1"]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "empty file"),
        (b"\xff\xfe" + HEADER.encode("utf-16-le"), "not UTF-8"),
        (f"{GOOD}\n{GOOD}\n".encode(), "not the header"),
        (b"user_id,product_id\nU1,P1\n", "not the header"),
        (f'{HEADER}\n{GOOD}\ne2,U1,P1,"view,1.00,2026-01-01\n'.encode(), "broken CSV"),
    ],
)
def test_a_file_that_cannot_be_read_loads_nothing_and_says_why(content, why):
    parsed = parse_file("f.csv", content)
    assert parsed.unreadable is not None and why in parsed.unreadable
    assert parsed.rows == 0


def test_a_file_gives_its_accepted_rows_its_refused_rows_and_itself_as_records():
    from spark.jobs.csv.load import EVENT, FILE, REFUSED, file_records

    text = f"{HEADER}\n{GOOD}\ne2,U1,P1,wishlist,1.00,2026-01-01\n"
    records = file_records("file:/in/a.csv", text.encode()).to_pylist()
    assert [r["record"] for r in records] == [EVENT, REFUSED, FILE]
    event, refused, file = records
    assert (event["event_id"], event["line_number"], event["product_price"]) == ("e1", 2, 9.99)
    assert event["event_timestamp"].isoformat() == "2026-01-01T00:00:00.123000+00:00"
    assert (refused["line_number"], refused["reason"]) == (3, UNKNOWN_EVENT_TYPE)
    assert refused["raw_line"] == "e2,U1,P1,wishlist,1.00,2026-01-01"
    assert (file["file_rows"], file["file_bytes"], file["reason"]) == (2, len(text), None)
    assert {r["source_file"] for r in records} == {"file:/in/a.csv"}


def test_an_unreadable_file_gives_one_record_with_its_reason():
    from spark.jobs.csv.load import FILE, file_records

    (record,) = file_records("f.csv", b"\xff\xfe").to_pylist()
    assert record["record"] == FILE and "not UTF-8" in record["reason"]
    assert record["file_rows"] == 0
