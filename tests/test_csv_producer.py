"""The CSV drops generator's pure side and its CLI: determinism, the file format, the mix of
kinds (each bad row confirmed by an independent check), messy ids, duplicate files, the
atomic write and the CLI against a temporary folder (no Spark, no services)."""

import csv
import json
import re
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from lakehouse.pipelines.csv import (
    COLUMNS,
    EVENT_TYPES,
    MALFORMED_PRICE,
    MALFORMED_TIMESTAMP,
    MISSING_VALUE,
    NON_POSITIVE_PRICE,
    UNKNOWN_EVENT_TYPE,
    WRONG_COLUMN_COUNT,
)
from lakehouse.settings import PROJECT_ROOT
from producers import csv_files
from producers.csv_files import (
    CLEAN,
    EVENT_TYPE_WEIGHTS,
    GENERATED_REASONS,
    KINDS,
    MESSY_IDS,
    CsvDropSimulator,
    DropReport,
    generate,
    write_atomically,
)
from tests.conftest import rest_of_output

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HEADER = ",".join(COLUMNS)
# Every kind of row at a share high enough to show up in a few files.
MIXED = {
    "missing": 0.05,
    "non_positive_price": 0.05,
    "unknown_type": 0.05,
    "malformed_price": 0.05,
    "malformed_timestamp": 0.05,
    "wrong_columns": 0.05,
    "messy_ids": 0.1,
}
USER_ID = re.compile(r"U\d{5}")
PRODUCT_ID = re.compile(r"P\d{4}")
PRICE = re.compile(r"-?\d+\.\d{2}")


def parsed(text: str) -> list[list[str]]:
    """The data rows as csv.reader reads them (the header checked and dropped)."""
    header, *rows = csv.reader(text.splitlines())
    assert header == list(COLUMNS)
    return rows


def timestamp_ms(text: str) -> int | None:
    """Epoch ms of a `2026-01-01T00:00:00.123Z` timestamp; None when not one."""
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text):
        return None
    try:
        moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return round(moment.timestamp() * 1000)


def defects(fields: list[str]) -> set[str]:
    """Every rule a parsed row breaks, read independently of the generator (all of them,
    not the first one, so a row with two defects would show)."""
    if len(fields) != len(COLUMNS):
        return {WRONG_COLUMN_COUNT}
    found = set()
    if any(value == "" for value in fields):
        found.add(MISSING_VALUE)
    _, _, _, event_type, price, stamp = fields
    if event_type and event_type not in EVENT_TYPES:
        found.add(UNKNOWN_EVENT_TYPE)
    if price and not PRICE.fullmatch(price):
        found.add(MALFORMED_PRICE)
    elif price and float(price) <= 0:
        found.add(NON_POSITIVE_PRICE)
    if stamp and timestamp_ms(stamp) is None:
        found.add(MALFORMED_TIMESTAMP)
    return found


def normalised(fields: list[str]) -> dict:
    """The event an accepted row stands for: ids trimmed and upper-cased."""
    event_id, user, product, event_type, price, stamp = fields
    return {
        "event_id": event_id,
        "user_id": user.strip().upper(),
        "product_id": product.strip().upper(),
        "event_type": event_type,
        "product_price": float(price),
        "event_time_ms": timestamp_ms(stamp),
    }


def originals(files):
    return [f for f in files if f.copy_of is None]


# ---- generation -----------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_or_start_others():
    files = generate(6, 300, seed=5, start_ms=START_MS, duplicate_files=0.3, **MIXED)
    again = generate(6, 300, seed=5, start_ms=START_MS, duplicate_files=0.3, **MIXED)
    assert files == again
    assert [f.text.encode() for f in files] == [f.text.encode() for f in again]
    other_seed = generate(6, 300, seed=6, start_ms=START_MS, duplicate_files=0.3, **MIXED)
    assert all(a.text != b.text for a, b in zip(files, other_seed, strict=True))
    later = generate(6, 300, seed=5, start_ms=START_MS + 1, duplicate_files=0.3, **MIXED)
    assert all(a.text != b.text for a, b in zip(files, later, strict=True))
    # a later start moves the times and makes new event ids, but draws the same rows
    kinds = [[row.kind for row in f.rows] for f in files]
    assert kinds == [[row.kind for row in f.rows] for f in later]


def test_every_file_is_the_header_then_its_rows_with_unix_line_endings():
    files = generate(5, 120, seed=1, start_ms=START_MS, **MIXED)
    for generated in files:
        assert generated.text.startswith(HEADER + "\n") and generated.text.endswith("\n")
        assert "\r" not in generated.text
        generated.text.encode("utf-8")
        assert len(generated.text.splitlines()) == 1 + 120
        assert len(parsed(generated.text)) == len(generated.rows) == 120
        assert [row.line_number for row in generated.rows] == list(range(2, 122))
        for row in generated.rows:
            assert row.kind in KINDS
            assert (row.reason is None) == (row.kind in (CLEAN, MESSY_IDS))
            assert (row.event is None) == (row.reason is not None)
            assert row.reason is None or row.reason == row.kind


def test_file_names_are_sortable_and_unique_within_and_across_runs():
    files = generate(12, 5, seed=3, start_ms=START_MS, duplicate_files=0.3)
    names = [f.name for f in files]
    assert names == sorted(names) and len(set(names)) == len(names)
    assert names[0] == "events-20260101T000000.000Z-s3-00001.csv"
    assert all(re.fullmatch(r"events-[0-9T.]+Z-s3-\d{5}\.csv", name) for name in names)
    other_seed = generate(12, 5, seed=4, start_ms=START_MS)
    later = generate(12, 5, seed=3, start_ms=START_MS + 1)
    assert not {f.name for f in other_seed} & set(names)
    assert not {f.name for f in later} & set(names)


def test_shares_are_roughly_respected():
    files = generate(20, 300, seed=11, start_ms=START_MS, **MIXED)
    rows = [row for f in files for row in f.rows]
    kinds = Counter(row.kind for row in rows)
    assert len(rows) == 6000 and set(kinds) == set(KINDS)
    for kind, name in csv_files.SHARE_OF_KIND.items():
        share = MIXED[name]
        assert 0.7 * share < kinds[kind] / len(rows) < 1.3 * share, kind
    assert 0.6 < kinds[CLEAN] / len(rows) < 0.7  # 1 - 0.4
    types = Counter(row.event["event_type"] for row in rows if row.event)
    accepted = sum(types.values())
    for event_type, weight in EVENT_TYPE_WEIGHTS.items():
        assert abs(types[event_type] / accepted - weight) < 0.03, event_type
    assert set(EVENT_TYPE_WEIGHTS) == set(EVENT_TYPES)
    # the defaults: 1 % of each defect, 5 % messy ids, no copies
    default = generate(10, 300, seed=11, start_ms=START_MS)
    kinds = Counter(row.kind for f in default for row in f.rows)
    assert all(10 <= kinds[reason] <= 60 for reason in GENERATED_REASONS), kinds
    assert 100 < kinds[MESSY_IDS] < 200
    assert all(f.copy_of is None for f in default)
    clean = generate(3, 300, seed=11, start_ms=START_MS, **dict.fromkeys(MIXED, 0.0))
    assert {row.kind for f in clean for row in f.rows} == {CLEAN}


def test_each_bad_row_has_exactly_its_one_defect_by_an_independent_check():
    files = generate(10, 300, seed=2, start_ms=START_MS, **MIXED)
    seen = Counter()
    for generated in files:
        for fields, row in zip(parsed(generated.text), generated.rows, strict=True):
            found = defects(fields)
            assert found == ({row.reason} if row.reason else set()), (row, fields)
            seen[row.kind] += 1
            if row.kind == WRONG_COLUMN_COUNT:
                assert len(fields) in (5, 7)
            elif row.kind == MISSING_VALUE:
                assert fields.count("") == 1
            elif row.kind == NON_POSITIVE_PRICE:
                assert float(fields[4]) <= 0
            elif row.kind == UNKNOWN_EVENT_TYPE:
                assert fields[3] in ("checkout", "wishlist", "click")
    assert set(seen) == set(KINDS)
    # both shapes of a wrong column count occur
    counts = {
        len(fields)
        for generated in files
        for fields, row in zip(parsed(generated.text), generated.rows, strict=True)
        if row.kind == WRONG_COLUMN_COUNT
    }
    assert counts == {5, 7}


def test_accepted_rows_are_the_events_expected_and_the_clock_steps_per_row():
    files = generate(4, 250, seed=8, start_ms=START_MS, step_ms=40, **MIXED)
    index = 0
    prices: dict[str, float] = {}
    for generated in files:
        for fields, row in zip(parsed(generated.text), generated.rows, strict=True):
            if row.event:
                assert normalised(fields) == row.event
                assert row.event["event_time_ms"] == START_MS + index * 40
                assert USER_ID.fullmatch(row.event["user_id"])
                assert PRODUCT_ID.fullmatch(row.event["product_id"])
                price = row.event["product_price"]
                assert 1.0 <= price <= 500.0 and round(price, 2) == price
                # a product has one price
                assert prices.setdefault(row.event["product_id"], price) == price
            index += 1


def test_messy_ids_normalise_to_the_expected_ids_and_clean_ids_are_as_expected():
    only_messy = {**dict.fromkeys(MIXED, 0.0), "messy_ids": 0.3}
    files = generate(5, 300, seed=4, start_ms=START_MS, **only_messy)
    messy = 0
    for generated in files:
        for fields, row in zip(parsed(generated.text), generated.rows, strict=True):
            user, product = fields[1], fields[2]
            expected = (row.event["user_id"], row.event["product_id"])
            assert (user.strip().upper(), product.strip().upper()) == expected
            if row.kind == MESSY_IDS:
                messy += 1
                assert (user, product) != expected
            else:
                assert (user, product) == expected
    assert messy > 300
    raw = [text for g in files for fields in parsed(g.text) for text in fields[1:3]]
    assert any(text != text.strip() for text in raw)  # stray spaces
    assert any(text.strip().islower() for text in raw)  # lower case


def test_event_ids_are_unique_except_in_duplicate_files_which_copy_an_earlier_file():
    files = generate(150, 20, seed=9, start_ms=START_MS, duplicate_files=0.3, **MIXED)
    copies = [f for f in files if f.copy_of]
    assert 0.2 < len(copies) / len(files) < 0.4
    by_name = {f.name: (position, f) for position, f in enumerate(files)}
    for position, copy in enumerate(files):
        if not copy.copy_of:
            continue
        original_position, original = by_name[copy.copy_of]
        assert original_position < position and original.copy_of is None
        assert copy.text == original.text and copy.rows == original.rows
        assert copy.name != original.name
    event_ids = [row.event["event_id"] for f in originals(files) for row in f.rows if row.event]
    assert len(event_ids) == len(set(event_ids))
    all_ids = {parsed_row[0] for f in originals(files) for parsed_row in parsed(f.text)}
    copied_ids = {parsed_row[0] for f in copies for parsed_row in parsed(f.text)}
    assert copied_ids <= all_ids
    # the originals do not depend on the duplicate share: same rows, other names
    without = generate(len(originals(files)), 20, seed=9, start_ms=START_MS, **MIXED)
    assert [f.text for f in without] == [f.text for f in originals(files)]


def test_impossible_options_are_refused():
    for options in (
        {"missing": 1.5},
        {"wrong_columns": -0.1},
        {"duplicate_files": 2.0},
        {"missing": 0.6, "messy_ids": 0.5},
        {"users": 0},
        {"rows_per_file": 0},
    ):
        with pytest.raises(ValueError):
            CsvDropSimulator(**options)
    # exactly 1 is fine
    CsvDropSimulator(**{**dict.fromkeys(MIXED, 0.0), "missing": 0.5, "messy_ids": 0.5})
    CsvDropSimulator(duplicate_files=1.0)


def test_report_counts_new_rows_by_kind_and_copies_apart():
    files = generate(30, 40, seed=6, start_ms=START_MS, duplicate_files=0.3, **MIXED)
    report = DropReport()
    for generated in files:
        report.add(generated)
    summary = report.as_dict(folder="f", seed=6, start_ms=START_MS, step_ms=100, seconds=0.5)
    copies = [f for f in files if f.copy_of]
    new = Counter(row.kind for f in originals(files) for row in f.rows)
    assert summary["files"] == 30 and summary["duplicate_files"] == len(copies) > 0
    assert summary["rows"] == 30 * 40 and summary["duplicate_rows"] == len(copies) * 40
    assert summary["rows_by_kind"] == {kind: new[kind] for kind in KINDS}
    assert summary["clock_end_ms"] == START_MS + (30 - len(copies)) * 40 * 100


# ---- writing --------------------------------------------------------------------------


def test_atomic_write_leaves_only_the_final_file(tmp_path, monkeypatch):
    path = write_atomically(tmp_path, "a.csv", b"x,y\n")
    assert path == tmp_path / "a.csv" and path.read_bytes() == b"x,y\n"
    write_atomically(tmp_path, "a.csv", b"z\n")  # replaces a file of the same name
    assert path.read_bytes() == b"z\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.csv"]

    def interrupted(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(csv_files.os, "replace", interrupted)
    with pytest.raises(OSError):
        write_atomically(tmp_path, "b.csv", b"never seen\n")
    assert [p.name for p in tmp_path.iterdir()] == ["a.csv"]  # no .b.csv.tmp left behind


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "producers.csv_files", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_writes_the_files_it_reports_and_regenerates(tmp_path):
    folder = tmp_path / "drops" / "csv"  # created when missing
    result = run_cli(
        f"--folder={folder}",
        "--files=3",
        "--rows=50",
        "--interval=0",
        "--seed=7",
        "--start=2026-01-01T00:00:00Z",
        "--step-ms=20",
        "--missing=0.1",
        "--duplicate-files=0.5",
        "--verbose",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    expected = generate(3, 50, seed=7, start_ms=START_MS, step_ms=20, missing=0.1,
                        duplicate_files=0.5)  # fmt: skip
    on_disk = sorted(folder.iterdir())
    assert [p.name for p in on_disk] == [f.name for f in expected]  # no .tmp left
    assert [p.read_bytes() for p in on_disk] == [f.text.encode() for f in expected]
    copies = [f for f in expected if f.copy_of]
    new = Counter(row.kind for f in originals(expected) for row in f.rows)
    assert report == {
        "folder": str(folder),
        "files": 3,
        "duplicate_files": len(copies),
        "rows": 150,
        "rows_by_kind": {kind: new[kind] for kind in KINDS},
        "duplicate_rows": 50 * len(copies),
        "seed": 7,
        "start_ms": START_MS,
        "step_ms": 20,
        "clock_end_ms": START_MS + (150 - 50 * len(copies)) * 20,
        "seconds": report["seconds"],
    }
    verbose = result.stderr.splitlines()
    assert len(verbose) == 3 and all(
        v.startswith(f.name) for v, f in zip(verbose, expected, strict=True)
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--missing=1.5"], "--missing"),
        (["--messy-ids=0.7", "--wrong-columns=0.5"], "add up to"),
        (["--start=yesterday"], "--start"),
        (["--rows=0"], "--rows"),
    ],
)
def test_cli_refuses_a_bad_option_in_one_line_with_exit_2(tmp_path, args, says):
    result = CliRunner().invoke(csv_files.app, [f"--folder={tmp_path}", "--files=1", *args])
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
    assert says in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_a_folder_it_cannot_write_into(tmp_path):
    not_a_folder = tmp_path / "file.csv"
    not_a_folder.write_text("")
    result = CliRunner().invoke(csv_files.app, [f"--folder={not_a_folder}", "--files=1"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"{not_a_folder} is a file, not a folder: pass a folder as --folder."
    ]


def test_cli_without_a_file_count_stops_on_sigterm_between_files_and_reports(tmp_path):
    feed = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "producers.csv_files",
            f"--folder={tmp_path}",
            "--files=0",
            "--rows=20",
            "--interval=0.02",
            "--verbose",
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        written = [feed.stderr.readline() for _ in range(3)]  # writing for a while
        feed.send_signal(signal.SIGTERM)
        stdout, errors = rest_of_output(feed, timeout=20)
    finally:
        if feed.poll() is None:
            feed.kill()
    assert feed.returncode == 0, errors
    report = json.loads(stdout.strip())
    names = sorted(p.name for p in tmp_path.iterdir())
    assert report["files"] == len(names) == len(written) + len(errors.splitlines()) >= 3
    assert report["rows"] == 20 * len(names)
    assert not [name for name in names if name.startswith(".")]
