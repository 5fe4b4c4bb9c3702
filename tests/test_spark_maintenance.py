"""VACUUM that never outruns a streaming reader (spark/maintenance.py, spark/checkpoints.py).

The rules are plain Python; the Spark tests run a real Delta table, a real streaming reader
with its checkpoint, OPTIMIZE and VACUUM in the test session.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from delta.tables import DeltaTable

from spark.checkpoints import delta_source_version, delta_stream_readers
from spark.maintenance import (
    RETENTION_CHECK,
    VacuumRefused,
    declared_retention_hours,
    readers_in_the_way,
    removes_files,
    vacuum,
)

TABLE_ID = "8d6a3e0c-0000-4000-8000-000000000001"


def offset_entry(*sources: dict | None) -> str:
    lines = ["v1", json.dumps({"batchWatermarkMs": 0, "batchTimestampMs": 1})]
    return "\n".join(lines + [json.dumps(s) if s else "-" for s in sources])


def delta_offset(table_id: str, version: int, index: int = -1) -> dict:
    return {
        "sourceVersion": 1,
        "reservoirId": table_id,
        "reservoirVersion": version,
        "index": index,
    }


def write_checkpoint(root: Path, query: str, planned: dict[int, int], committed: list[int]):
    for batch, version in planned.items():
        (root / query / "offsets").mkdir(parents=True, exist_ok=True)
        (root / query / "offsets" / str(batch)).write_text(
            offset_entry(None, delta_offset(TABLE_ID, version))
        )
    for batch in committed:
        (root / query / "commits").mkdir(parents=True, exist_ok=True)
        (root / query / "commits" / str(batch)).write_text("v1\n{}")


def test_an_offset_entry_gives_the_version_of_the_table_it_reads():
    entry = offset_entry({"topic-a": {"0": 5}}, delta_offset(TABLE_ID, 7))
    assert delta_source_version(entry, TABLE_ID) == 7
    assert delta_source_version(entry, "another-table") is None
    # Cut inside version 7 by a file limit: version 7 is still to be read.
    assert delta_source_version(offset_entry(delta_offset(TABLE_ID, 7, 3)), TABLE_ID) == 7
    # Every file of version 7 read.
    assert delta_source_version(offset_entry(delta_offset(TABLE_ID, 7, 2**63 - 101)), TABLE_ID) == 8
    assert delta_source_version(offset_entry(None), TABLE_ID) is None


def test_a_reader_resumes_after_its_last_committed_batch(tmp_path):
    # Batch 2 is planned but not committed: after a restart it is read again from batch 1's end.
    write_checkpoint(tmp_path, "silver", {0: 3, 1: 5, 2: 9}, committed=[0, 1])
    # Nothing committed yet: the first batch reads the snapshot it planned.
    write_checkpoint(tmp_path, "starting", {0: 4, 1: 6}, committed=[])
    write_checkpoint(tmp_path, "never_planned", {}, committed=[])
    (tmp_path / "other_source").mkdir()
    assert delta_stream_readers(tmp_path, TABLE_ID) == {"silver": 5, "starting": 4}
    assert delta_stream_readers(tmp_path / "absent", TABLE_ID) == {}


def test_which_commits_can_remove_files():
    assert not removes_files("WRITE", {"mode": "Append"})
    assert removes_files("WRITE", {"mode": "Overwrite"})
    assert not removes_files("STREAMING UPDATE", {"outputMode": "Append"})
    assert removes_files("STREAMING UPDATE", {"outputMode": "Complete"})
    assert not removes_files("SET TBLPROPERTIES", {})
    assert removes_files("OPTIMIZE", {})
    assert removes_files("SOMETHING NEW", {})  # unknown: assumed to remove


def test_the_declared_retention_in_hours():
    assert declared_retention_hours({}) == 168
    key = "delta.deletedFileRetentionDuration"
    assert declared_retention_hours({key: "interval 0 seconds"}) == 0
    assert declared_retention_hours({key: "interval 2 days"}) == 48
    assert declared_retention_hours({key: "INTERVAL 1 WEEK"}) == 168
    assert declared_retention_hours({key: "interval 90 minutes"}) == 1.5
    assert declared_retention_hours({key: "7 fortnights"}) == 0  # unreadable: strictest


def test_readers_behind_the_newest_removing_commit_are_in_the_way():
    readers = {"silver": 5, "audit": 9}
    assert readers_in_the_way(readers, []) == {}
    assert readers_in_the_way(readers, [3, 5]) == {}
    assert readers_in_the_way(readers, [3, 7]) == {"silver": 5}
    assert readers_in_the_way(readers, [10]) == readers


# ---- real Delta table, real streaming reader ----------------------------------------


def append(spark, path: str, first: int, count: int = 10) -> None:
    (
        spark.range(first, first + count)
        .selectExpr("id", "'2026-01-01' AS day")
        .coalesce(1)  # one file per commit
        .write.format("delta")
        .mode("append")
        .partitionBy("day")
        .save(path)
    )


def read_along(spark, source: str, checkpoint: Path, copy: str) -> int:
    """One availableNow run of a streaming copy of the table; the copy's row count."""
    (
        spark.readStream.format("delta")
        .load(source)
        .writeStream.format("delta")
        .option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True)
        .start(copy)
        .awaitTermination()
    )
    return spark.read.format("delta").load(copy).count()


def data_files(path: str) -> set[str]:
    """The table's files outside its log (the local file system adds a .crc to each)."""
    return {str(p) for p in Path(path).rglob("*") if p.is_file() and "_delta_log" not in p.parts}


def parquet(files: set[str]) -> set[str]:
    return {f for f in files if f.endswith(".parquet")}


@pytest.mark.services
@pytest.mark.spark
def test_vacuum_waits_for_a_lagging_reader_then_deletes(spark, tmp_path):
    table, copy, checkpoints = str(tmp_path / "t"), str(tmp_path / "copy"), tmp_path / "cp"
    for first in (0, 10, 20):
        append(spark, table, first)
    assert read_along(spark, table, checkpoints / "copy", copy) == 30
    append(spark, table, 30)
    append(spark, table, 40)  # unread by the copy: it resumes below the OPTIMIZE
    DeltaTable.forPath(spark, table).optimize().executeCompaction()
    before = data_files(table)

    with pytest.raises(VacuumRefused, match="below the table's 168 h"):
        vacuum(spark, table, 0, checkpoint_root=checkpoints)
    with pytest.raises(VacuumRefused, match=r"copy \(resumes at version 3\)"):
        vacuum(
            spark,
            table,
            0,
            checkpoint_root=checkpoints,
            allow_short_retention=True,
            reader_wait_s=0,
        )
    assert data_files(table) == before  # nothing deleted under the reader

    assert read_along(spark, table, checkpoints / "copy", copy) == 50
    result = vacuum(
        spark, table, 0, checkpoint_root=checkpoints, allow_short_retention=True, reader_wait_s=0
    )
    deleted = before - data_files(table)
    assert len(parquet(deleted)) == 5  # the five appends OPTIMIZE replaced
    assert len(parquet(data_files(table))) == 1
    assert result["files_deleted"] == 5, result
    assert result["readers"] == {"copy": 6}  # caught up: past the OPTIMIZE (version 5)
    # The stream's own session keeps Delta's retention check.
    assert spark.conf.get(RETENTION_CHECK) == "true"
    # Readers of the latest version, batch and streaming, still get every row.
    append(spark, table, 50)
    assert spark.read.format("delta").load(table).count() == 60
    assert read_along(spark, table, checkpoints / "copy", copy) == 60


@pytest.mark.services
@pytest.mark.spark
def test_vacuum_keeps_what_its_retention_says_whatever_the_table_declares(spark, tmp_path):
    """Delta 4.4 ignores RETAIN unless it is 0 and follows the table's retention: on a table
    declared with 0 s a 7-day VACUUM deleted what OPTIMIZE had just replaced (measured)."""
    table, copy, checkpoints = str(tmp_path / "t"), str(tmp_path / "copy"), tmp_path / "cp"
    append(spark, table, 0)
    spark.sql(
        f"ALTER TABLE delta.`{table}` SET TBLPROPERTIES"
        " ('delta.deletedFileRetentionDuration' = 'interval 0 seconds')"
    )
    assert read_along(spark, table, checkpoints / "copy", copy) == 10
    append(spark, table, 10)
    DeltaTable.forPath(spark, table).optimize().executeCompaction()
    before = data_files(table)
    assert vacuum(spark, table, 168, checkpoint_root=checkpoints)["files_deleted"] == 0
    assert data_files(table) == before
    # 0 h is this table's own retention: no override needed, and still the reader is waited for.
    with pytest.raises(VacuumRefused, match="copy"):
        vacuum(spark, table, 0, checkpoint_root=checkpoints, reader_wait_s=0)
    assert data_files(table) == before
    assert read_along(spark, table, checkpoints / "copy", copy) == 20
    vacuum(spark, table, 0, checkpoint_root=checkpoints)
    assert len(parquet(before - data_files(table))) == 2
