"""The CSV drops pipeline's chaos audit (lakehouse/audit.py): a live drop of files with bad
rows of every kind and exact copies of recent files under other names, and the
reconciliation of its three Postgres tables.

The generator is pure per seed, options and start, so the producer's report (files written,
seed, start, clock step) regenerates every file and what the pipeline must make of each row.
Expected: each accepted event once in `user_events` (a copy's rows are already loaded, so it
adds nothing), each refused row of every file once in the quarantine (a copy is another file
name, and the quarantine's key is the file and the line: its bad rows are refused again),
and each file once in `csv_files`, read. There is no watermark, so nothing to close.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from lakehouse.audit import Lake, once, reconcile
from producers.csv_files import SHARE_OF_KIND, DropReport, GeneratedFile, file_name, generate

if TYPE_CHECKING:
    from lakehouse.layout import Layout
    from lakehouse.settings import Settings

QUARANTINE = "user_events_quarantine"
# What identifies an event in user_events, in the pipeline's normal form (ids trimmed, the
# user and product upper-cased): the generator's expected event holds the same.
EVENT_KEY = ("event_id", "user_id", "product_id", "event_type")


def _bad_rows() -> dict[str, float]:
    """Every kind of bad row at 1%, messy ids (accepted once normalised) at 5%."""
    return {option: 0.01 for option in SHARE_OF_KIND.values()} | {"messy_ids": 0.05}


def file_of(source_file: str) -> str:
    """A file's name from the URI the pipeline records (`file:/...` or `s3a://...`): the
    namespace's folder is the run's own, so the name alone identifies it."""
    return PurePosixPath(source_file).name


@dataclass(frozen=True)
class CsvAudit:
    shares: dict[str, float] = field(default_factory=_bad_rows)  # CsvDropSimulator fields
    duplicate_files: float = 0.1
    interval_s: float = 3.0  # a file every few seconds, as a real drop folder gets them
    rate_divisor: float = 4.0  # rows/s = rate / 4: a file is heavier to load than a message

    def options(self) -> dict[str, float]:
        """The CsvDropSimulator options (and CLI flags) the producer runs with, but rows."""
        return {**self.shares, "duplicate_files": self.duplicate_files}

    def rows_per_file(self, rate: float) -> int:
        return max(1, round(rate / self.rate_divisor * self.interval_s))

    def producer_command(
        self, settings: Settings, layout: Layout, rate: float, seed: int
    ) -> list[str]:
        # The driver's folder for the namespace (the producer creates a local one, the
        # driver too).
        folder = layout.folder(settings.csv_input_folder)
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in self.options().items()]
        return [
            *(sys.executable, "-m", "producers.csv_files", f"--folder={folder}"),
            *("--files=0", f"--rows={self.rows_per_file(rate)}"),
            *(f"--interval={self.interval_s}", f"--seed={seed}"),
            *flags,
        ]

    def written(self, produced: dict) -> list[GeneratedFile]:
        """The files the producer wrote, regenerated; ValueError when its report does not
        agree (it ran with other options than this audit's)."""
        files = produced["files"]
        if not files:
            return []
        rows, rest = divmod(produced["rows"], files)  # every file, copy or not, has `rows`
        generated = generate(
            files,
            rows,
            seed=produced["seed"],
            start_ms=produced["start_ms"],
            step_ms=produced["step_ms"],
            **self.options(),
        )
        again = DropReport()
        for generated_file in generated:
            again.add(generated_file)
        # Only the counts are compared: the rest of the report is the producer's own.
        mine = again.as_dict(folder="", seed=0, start_ms=0, step_ms=1, seconds=0)
        keys = ("duplicate_files", "rows", "rows_by_kind")
        if rest or any(mine[k] != produced[k] for k in keys):
            raise ValueError(
                "the csv producer's report does not match the files regenerated with the "
                f"audit's options {self.options()}: was it run with others?"
            )
        return generated

    def open_event_time(self, settings: Settings, layout: Layout) -> bool:
        return False  # no event time: files load whole, whenever they come

    def close_event_time(self, settings: Settings, layout: Layout, produced: dict) -> None:
        """Nothing: the pipeline holds nothing back (no watermark, no state)."""

    def read_back(self, lake: Lake) -> dict[str, Any]:
        return {
            "user_events": lake.postgres("user_events", list(EVENT_KEY)),
            QUARANTINE: lake.postgres(QUARANTINE, ["source_file", "line_number", "reason"]),
            "csv_files": lake.postgres("csv_files", ["source_file", "status"]),
        }

    def settled(self, produced: dict, found: dict[str, Any]) -> bool:
        """Every file written is in csv_files (its rows commit in the same transaction)."""
        seed, start_ms = produced["seed"], produced["start_ms"]
        names = {file_name(start_ms, seed, seq) for seq in range(1, produced["files"] + 1)}
        return names <= {file_of(path) for path in found["csv_files"]["source_file"]}

    def reconcile(self, produced: dict, found: dict[str, Any]) -> dict:
        files = self.written(produced)
        accepted = [r.event for f in files for r in f.rows if r.reason is None]
        refused = Counter(
            (f.name, r.line_number, r.reason) for f in files for r in f.rows if r.reason
        )
        events, quarantine = found["user_events"], found[QUARANTINE]
        recorded = found["csv_files"]
        sinks = {
            # Each accepted event once, however many files carried it.
            "postgres.user_events": reconcile(
                once(_keys(accepted)),
                Counter(_keys(events.to_dict("records"))),
                produced=len(accepted),
            ),
            f"postgres.{QUARANTINE}": reconcile(
                refused,
                Counter(
                    (file_of(path), int(line), reason)
                    for path, line, reason in zip(
                        quarantine["source_file"],
                        quarantine["line_number"],
                        quarantine["reason"],
                        strict=True,
                    )
                ),
            ),
            # Each file once, read (a rejected one would be lost and duplicated).
            "postgres.csv_files": reconcile(
                Counter((f.name, "loaded") for f in files),
                Counter(
                    (file_of(path), status)
                    for path, status in zip(
                        recorded["source_file"], recorded["status"], strict=True
                    )
                ),
            ),
        }
        duplicates = sum(1 for f in files if f.copy_of)
        return {"sinks": sinks, "files": {"written": len(files), "duplicates": duplicates}}


def _keys(events: Iterable[dict]) -> list[tuple]:
    return [tuple(event[column] for column in EVENT_KEY) for event in events]


AUDIT = CsvAudit()
