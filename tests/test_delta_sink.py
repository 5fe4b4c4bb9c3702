"""Exactly-once Delta appends: the batch marks (pure) and a replayed batch on a real table."""

import pytest

from spark import delta_sink
from spark.delta_sink import batch_mark, last_marked_batch, marked_batch
from spark.session import CHECKPOINT_INTERVAL_DEFAULT


def test_a_mark_names_its_writer_and_batch():
    mark = batch_mark("market_bronze:abc", 41)
    assert marked_batch(mark, "market_bronze:abc") == 41
    assert marked_batch(mark) == 41  # any writer
    assert marked_batch(mark, "market_bronze:other-checkpoint") is None


@pytest.mark.parametrize(
    "user_metadata", [None, "", "not json", "[1, 2]", '{"writer": "w"}', '{"batch": "7"}']
)
def test_commits_without_a_mark_name_no_batch(user_metadata):
    assert marked_batch(user_metadata, "w") is None


def test_the_last_batch_is_the_highest_mark_of_that_writer():
    commits = [batch_mark("w", 7), None, batch_mark("other", 99), batch_mark("w", 6), "{}"]
    assert last_marked_batch(commits, "w") == 7
    assert last_marked_batch(commits, "nobody") is None
    assert last_marked_batch([], "w") is None


@pytest.mark.spark
def test_a_replayed_batch_is_skipped_and_appends_rebuild_no_state(spark, tmp_path):
    """Also: the writer's first append sets the table's checkpoint interval."""
    path = str(tmp_path / "table")
    tracker = spark.sparkContext.statusTracker()

    def append(batch_id: int, rows: int, writer: str = "q:1") -> int:
        """Appends; returns how many Spark jobs the append ran."""
        group = f"append-{writer}-{batch_id}-{len(tracker.getJobIdsForGroup(None))}"
        spark.sparkContext.setJobGroup(group, group)
        try:
            delta_sink.append_exactly_once(spark.range(rows), path, writer, batch_id)
        finally:
            spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
        return len(tracker.getJobIdsForGroup(group))

    def count() -> int:
        return spark.read.format("delta").load(path).count()

    def checkpoint_interval() -> str:
        shown = spark.sql(f"SHOW TBLPROPERTIES delta.`{path}` ('delta.checkpointInterval')")
        return shown.first().value

    # A table made before the checkpoint interval setting: Delta's default.
    wanted = spark.conf.get(CHECKPOINT_INTERVAL_DEFAULT)
    spark.conf.unset(CHECKPOINT_INTERVAL_DEFAULT)
    try:
        spark.range(0).write.format("delta").save(path)
    finally:
        spark.conf.set(CHECKPOINT_INTERVAL_DEFAULT, wanted)
    assert checkpoint_interval() != wanted

    delta_sink._LAST_BATCH.clear()
    append(0, 5)
    assert checkpoint_interval() == wanted == "100"
    jobs_later = [append(1, 5), append(2, 5)]
    # Only the write itself: no rebuild of the table's state (three more jobs per append).
    assert jobs_later == [1, 1]
    assert count() == 15

    # A new driver process (nothing remembered) replays its last batch: skipped.
    delta_sink._LAST_BATCH.clear()
    append(2, 5)
    assert count() == 15
    append(3, 5)
    assert count() == 20

    # Another checkpoint's writer numbers its batches from 0 again and is not skipped.
    append(0, 1, writer="q:2")
    assert count() == 21

    # A batch an older version recorded with Delta's txnAppId only is skipped too.
    spark.range(2).write.format("delta").mode("append").option("txnAppId", "q:1").option(
        "txnVersion", "9"
    ).save(path)
    delta_sink._LAST_BATCH.clear()
    append(9, 5)
    assert count() == 23
    append(10, 5)
    assert count() == 28


@pytest.mark.parametrize(("rows", "tasks"), [(0, 1), (300, 1), (100_000, 1), (100_001, 2)])
def test_a_batch_gets_a_write_task_per_hundred_thousand_rows(rows, tasks):
    assert delta_sink.write_tasks(rows) == tasks


@pytest.mark.spark
def test_a_small_batch_is_written_as_one_file_per_partition_value(spark, tmp_path):
    """A micro-batch in three partitions (three Kafka partitions) whose row count is known
    makes one file per date, not one per partition and date."""
    path = str(tmp_path / "events")
    batch = spark.range(0, 300, numPartitions=3).selectExpr(
        "id", "date_add(date'2026-12-01', cast(id % 2 as int)) as event_date"
    )
    delta_sink._LAST_BATCH.clear()
    delta_sink.append_exactly_once(batch, path, "q:1", 0, ("event_date",))
    delta_sink.append_exactly_once(batch, path, "q:1", 1, ("event_date",), rows=300)
    history = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").orderBy("version").collect()
    assert [h.operationMetrics["numFiles"] for h in history] == ["6", "2"]
    assert spark.read.format("delta").load(path).count() == 600
