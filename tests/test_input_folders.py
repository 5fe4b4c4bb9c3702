"""What waits in an input folder (infra/input_folders.py), on a local folder."""

from __future__ import annotations

import os

from infra.input_folders import waiting_files
from lakehouse.settings import Settings


def test_only_listed_files_directly_in_the_folder_wait_oldest_first(tmp_path):
    for name in ("b.csv", "a.csv", ".a.csv.tmp", "_note"):
        (tmp_path / name).write_text("x")
    os.utime(tmp_path / "b.csv", (1_000_000, 1_000_000))
    (tmp_path / "_archive").mkdir()
    (tmp_path / "_archive" / "old.csv").write_text("x")
    (tmp_path / "sub").mkdir()
    waiting = waiting_files(str(tmp_path), Settings(home=tmp_path))
    assert [f.name for f in waiting] == ["b.csv", "a.csv"]
    assert waiting[0].size == 1 and waiting[0].modified_at.timestamp() == 1_000_000


def test_a_missing_folder_has_nothing_waiting(tmp_path):
    assert waiting_files(f"file:{tmp_path / 'none'}", Settings(home=tmp_path)) == []
