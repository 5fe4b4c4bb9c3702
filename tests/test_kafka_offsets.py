"""The accounting of Kafka offsets a batch skipped because Kafka no longer held them."""

import json

from spark.kafka_offsets import (
    is_data_loss,
    logged_kafka_offsets,
    offsets_lost,
    parse_kafka_offsets,
)


def test_offsets_below_the_earliest_kafka_holds_are_lost_and_nothing_else():
    start = {("t", 0): 100, ("t", 1): 50, ("t", 2): 10}
    end = {("t", 0): 300, ("t", 1): 60, ("t", 2): 20, ("t", 3): 5}
    earliest = {("t", 0): 250, ("t", 1): 80, ("t", 2): 0, ("t", 3): 0}
    # 0: 150 deleted unread; 1: the whole range is gone (not more than the range);
    # 2: nothing deleted; 3: a partition new in this batch starts at its earliest offset.
    assert offsets_lost(start, end, earliest) == {("t", 0): 150, ("t", 1): 10}


def test_offsets_parse_kafka_sources_only():
    assert parse_kafka_offsets('{"a":{"0":5,"1":7}}') == {("a", 0): 5, ("a", 1): 7}
    for other in (None, "None", '{"reservoirVersion": 3}', "[1]", "{", "{}"):
        assert parse_kafka_offsets(other) is None


def test_the_offset_log_gives_the_kafka_source_of_a_batch(tmp_path):
    offsets = tmp_path / "offsets"
    offsets.mkdir()
    lines = ["v1", json.dumps({"batchWatermarkMs": 0}), json.dumps({"a": {"0": 9}})]
    (offsets / "4").write_text("\n".join(lines))
    assert logged_kafka_offsets(str(tmp_path), 4) == {("a", 0): 9}
    assert logged_kafka_offsets(f"file:{tmp_path}", 5) is None


def test_the_data_loss_error_is_recognised():
    assert is_data_loss("... Some data may have been lost because they are not available")
    assert not is_data_loss("division by zero")
