"""The accounting of Kafka offsets a batch skipped because Kafka no longer held them, and
the offsets a query's checkpoint says it committed."""

import json

from spark.kafka_offsets import (
    committed_kafka_offsets,
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
    # A progress's JSON holds its sources' offsets already parsed.
    assert parse_kafka_offsets({"a": {"0": 5}}) == {("a", 0): 5}
    assert parse_kafka_offsets({"reservoirVersion": 3}) is None
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


def write_offsets(checkpoint, batch: int, source: str) -> None:
    (checkpoint / "offsets").mkdir(parents=True, exist_ok=True)
    (checkpoint / "offsets" / str(batch)).write_text(f'v1\n{{"batchWatermarkMs":0}}\n{source}\n')


def test_committed_offsets_are_the_newest_committed_batch_s_of_kafka_readers_only(tmp_path):
    bronze = tmp_path / "market_bronze"
    write_offsets(bronze, 0, '{"stock-trades":{"0":5,"1":7}}')
    write_offsets(bronze, 1, '{"stock-trades":{"0":9,"1":11}}')
    write_offsets(bronze, 2, '{"stock-trades":{"0":20,"1":20}}')  # planned, not committed
    (bronze / "commits").mkdir()
    for batch in (0, 1):
        (bronze / "commits" / str(batch)).write_text("v1\n{}\n")
    silver = tmp_path / "trades_enrichment"  # reads Delta: not a Kafka reader
    write_offsets(silver, 0, '{"sourceVersion":1,"reservoirVersion":3,"index":-1}')
    (silver / "commits").mkdir()
    (silver / "commits" / "0").write_text("v1\n{}\n")
    (tmp_path / "never_ran").mkdir()
    assert committed_kafka_offsets(sorted(tmp_path.iterdir())) == {
        "market_bronze": {("stock-trades", 0): 9, ("stock-trades", 1): 11}
    }
