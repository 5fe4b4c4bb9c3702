"""The CSV drops pipeline's chaos audit without Spark or services: a lake built from the
generator's own account reconciles exactly, each kind of fault shows on its own sink, the
producer's command runs and its report regenerates what it wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from lakehouse.layout import Layout
from lakehouse.settings import load_settings
from producers import csv_files
from producers.csv_audit import AUDIT, QUARANTINE
from producers.csv_files import DropReport, GeneratedFile, generate

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SEED, FILES, ROWS, STEP_MS = 5, 30, 40, 1_000
FOLDER = "/tmp/incoming/csv-chaos1"
SINKS = ("postgres.user_events", f"postgres.{QUARANTINE}", "postgres.csv_files")


def run(files: int = FILES) -> tuple[dict, list[GeneratedFile]]:
    """What a producer with the audit's options wrote, and the report it printed."""
    generated = generate(
        files, ROWS, seed=SEED, start_ms=START_MS, step_ms=STEP_MS, **AUDIT.options()
    )
    report = DropReport()
    for generated_file in generated:
        report.add(generated_file)
    summary = report.as_dict(
        folder=FOLDER, seed=SEED, start_ms=START_MS, step_ms=STEP_MS, seconds=60.0
    )
    return summary, generated


def perfect_lake(files: list[GeneratedFile]) -> dict[str, pd.DataFrame]:
    """The three tables as the pipeline leaves them: a copy's events were loaded by its
    original (the first file wins), its bad rows quarantined under its own name."""
    uri = lambda name: f"file:{FOLDER}/{name}"  # noqa: E731
    events = [r.event for f in files if f.copy_of is None for r in f.rows if r.reason is None]
    refused = [(uri(f.name), r.line_number, r.reason) for f in files for r in f.rows if r.reason]
    return {
        "user_events": pd.DataFrame(events)[["event_id", "user_id", "product_id", "event_type"]],
        QUARANTINE: pd.DataFrame(refused, columns=["source_file", "line_number", "reason"]),
        "csv_files": pd.DataFrame(
            [(uri(f.name), "loaded") for f in files], columns=["source_file", "status"]
        ),
    }


def faults(report: dict) -> dict[str, tuple[int, int]]:
    """(lost, duplicated) of each sink that is not exact."""
    return {
        name: (line["lost"], line["duplicated"])
        for name, line in report["sinks"].items()
        if line["lost"] or line["duplicated"]
    }


@pytest.fixture(scope="module")
def written() -> tuple[dict, list[GeneratedFile]]:
    return run()


def test_a_perfect_lake_reconciles_exactly_on_every_sink(written):
    produced, files = written
    copies = [f for f in files if f.copy_of]
    assert copies, "the seed should make at least one duplicate file"
    report = AUDIT.reconcile(produced, perfect_lake(files))
    assert set(report["sinks"]) == set(SINKS)
    assert faults(report) == {}
    assert report["files"] == {"written": FILES, "duplicates": len(copies)}
    events = report["sinks"]["postgres.user_events"]
    # The copies' rows were sent but expected nowhere new.
    assert events["produced"] - events["expected"] == sum(
        1 for f in copies for r in f.rows if r.reason is None
    )
    assert report["sinks"][f"postgres.{QUARANTINE}"]["expected"] == sum(
        1 for f in files for r in f.rows if r.reason
    )


def test_every_kind_of_bad_row_and_a_messy_id_are_in_the_run(written):
    _, files = written
    kinds = sum((f.kinds() for f in files), start=DropReport().rows_by_kind)
    assert all(kinds[reason] for reason in csv_files.GENERATED_REASONS)
    assert kinds[csv_files.MESSY_IDS]


def test_a_missing_row_shows_as_lost_on_its_sink_only(written):
    produced, files = written
    for sink, table in (
        ("postgres.user_events", "user_events"),
        (f"postgres.{QUARANTINE}", QUARANTINE),
    ):
        lake = perfect_lake(files)
        lake[table] = lake[table].iloc[1:]
        assert faults(AUDIT.reconcile(produced, lake)) == {sink: (1, 0)}


def test_a_row_loaded_twice_shows_as_duplicated(written):
    produced, files = written
    for sink, table in (
        ("postgres.user_events", "user_events"),
        (f"postgres.{QUARANTINE}", QUARANTINE),
    ):
        lake = perfect_lake(files)
        lake[table] = pd.concat([lake[table], lake[table].iloc[[3]]])
        assert faults(AUDIT.reconcile(produced, lake)) == {sink: (0, 1)}


def test_a_file_recorded_twice_or_rejected_shows_on_csv_files(written):
    produced, files = written
    lake = perfect_lake(files)
    lake["csv_files"] = pd.concat([lake["csv_files"], lake["csv_files"].iloc[[0]]])
    assert faults(AUDIT.reconcile(produced, lake)) == {"postgres.csv_files": (0, 1)}
    lake = perfect_lake(files)
    lake["csv_files"].loc[0, "status"] = "rejected"
    assert faults(AUDIT.reconcile(produced, lake)) == {"postgres.csv_files": (1, 1)}


def test_an_id_left_unnormalised_is_not_the_event_expected(written):
    produced, files = written
    lake = perfect_lake(files)
    lake["user_events"].loc[0, "user_id"] = f" {lake['user_events'].loc[0, 'user_id'].lower()}"
    assert faults(AUDIT.reconcile(produced, lake)) == {"postgres.user_events": (1, 1)}


def test_settled_once_every_file_written_is_in_csv_files(written):
    produced, files = written
    lake = perfect_lake(files)
    assert AUDIT.settled(produced, lake)
    lake["csv_files"] = lake["csv_files"].iloc[:-1]
    assert not AUDIT.settled(produced, lake)
    empty = pd.DataFrame(columns=["source_file", "status"])
    assert not AUDIT.settled(produced, {**lake, "csv_files": empty})
    assert AUDIT.settled(run(0)[0], {**lake, "csv_files": empty})


def test_a_report_of_other_options_is_refused(written):
    produced, _ = written
    with pytest.raises(ValueError, match="does not match"):
        AUDIT.written({**produced, "duplicate_files": produced["duplicate_files"] + 1})
    with pytest.raises(ValueError, match="does not match"):
        AUDIT.written({**produced, "rows": produced["rows"] + 1})


def test_the_producer_command_writes_into_the_namespace_folder_and_its_report_regenerates(
    tmp_path: Path, monkeypatch
):
    monkeypatch.setenv("LAKEHOUSE_CSV_INPUT", str(tmp_path / "csv"))
    settings = load_settings()
    command = AUDIT.producer_command(settings, Layout(settings, "chaosaudit"), 200.0, SEED)
    folder = tmp_path / "csv-chaosaudit"
    assert command[1:4] == ["-m", "producers.csv_files", f"--folder={folder}"]
    assert "--files=0" in command and "--rows=150" in command and "--interval=3.0" in command
    # The same flags for a few files without pauses (the last --files and --interval win).
    args = [*command[3:], "--files=12", "--interval=0", "--start=2026-01-01T00:00:00Z"]
    result = CliRunner().invoke(csv_files.app, args)
    assert result.exit_code == 0, result.output
    produced = json.loads(result.stdout.strip().splitlines()[-1])
    files = AUDIT.written(produced)
    assert sorted(p.name for p in folder.iterdir()) == sorted(f.name for f in files)
    assert all((folder / f.name).read_text() == f.text for f in files)
