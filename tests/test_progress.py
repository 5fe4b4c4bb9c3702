"""The progress row kept per micro-batch, from a progress report as Spark gives it, and
the heartbeat a long batch writes while it advances."""

import json
from datetime import UTC, datetime

import psycopg

from spark import progress
from spark.progress import kafka_records_behind, progress_row

PROGRESS = {
    "id": "6f1c0f5e-0000-4000-8000-000000000001",
    "runId": "6f1c0f5e-0000-4000-8000-000000000002",
    "name": "trades_enrichment",
    "timestamp": "2026-11-24T10:00:00.123Z",
    "batchId": 7,
    "numInputRows": 1200,
    "inputRowsPerSecond": 100.0,
    "processedRowsPerSecond": 400.0,
    "durationMs": {"triggerExecution": 3000, "addBatch": 2500},
    "eventTime": {"watermark": "2026-11-24T09:59:50.000Z"},
    "stateOperators": [
        {"numRowsTotal": 16, "numRowsDroppedByWatermark": 5},
        {
            "numRowsTotal": 4,
            "numRowsDroppedByWatermark": 2,
            "customMetrics": {"numDroppedDuplicateRows": 3},
        },
    ],
}


def test_progress_row_sums_state_operators_and_parses_times():
    row = progress_row(PROGRESS)
    assert row["query_id"] == PROGRESS["id"]
    assert (row["batch_id"], row["input_rows"], row["duration_ms"]) == (7, 1200, 3000)
    assert row["rows_dropped_by_watermark"] == 7
    assert row["state_rows"] == 20
    assert row["duplicates_dropped"] == 3
    assert row["watermark"] == datetime(2026, 11, 24, 9, 59, 50, tzinfo=UTC)
    assert row["batch_time"].tzinfo is not None


def test_a_stateless_query_has_no_state_rows_and_no_drops():
    row = progress_row({**PROGRESS, "stateOperators": [], "eventTime": {}})
    assert row["state_rows"] is None
    assert row["rows_dropped_by_watermark"] == row["duplicates_dropped"] == 0
    assert row["watermark"] is None


# Sources as a progress's JSON holds them (the listener's input): offsets parsed.
KAFKA_SOURCE = {
    "description": "KafkaV2[Subscribe[stock-trades, stock-info]]",
    "endOffset": {"stock-trades": {"0": 100, "1": 250}, "stock-info": {"0": 7}},
    "latestOffset": {"stock-trades": {"0": 130, "1": 250}, "stock-info": {"0": 9}},
}
DELTA_SOURCE = {
    "description": "DeltaSource[s3a://lakehouse/bronze/trades]",
    "endOffset": {"sourceVersion": 1, "reservoirVersion": 12, "index": -1},
    "latestOffset": {"sourceVersion": 1, "reservoirVersion": 14, "index": -1},
}


def test_kafka_lag_sums_every_partition_behind_the_latest_offset():
    row = progress_row({**PROGRESS, "sources": [KAFKA_SOURCE]})
    assert row["kafka_records_behind"] == 30 + 0 + 2


def test_kafka_lag_counts_a_partition_the_batch_never_read():
    source = {**KAFKA_SOURCE, "latestOffset": {"stock-trades": {"0": 100, "1": 250, "2": 40}}}
    assert kafka_records_behind([source]) == 40
    # pyspark's progress objects (a query's recentProgress) give the offsets as JSON text.
    as_text = {k: json.dumps(v) if k.endswith("Offset") else v for k, v in source.items()}
    assert kafka_records_behind([as_text]) == 40


def test_a_query_without_kafka_sources_or_latest_offsets_has_no_kafka_lag():
    assert kafka_records_behind([DELTA_SOURCE]) is None
    assert kafka_records_behind([{**KAFKA_SOURCE, "latestOffset": "None"}]) is None
    assert kafka_records_behind([{**KAFKA_SOURCE, "latestOffset": None}]) is None
    assert progress_row(PROGRESS)["kafka_records_behind"] is None
    # A Kafka source beside a Delta source: only the Kafka one counts.
    assert kafka_records_behind([DELTA_SOURCE, KAFKA_SOURCE]) == 32


def heartbeat_at(settings, job_key: str, query: str):
    with psycopg.connect(settings.postgres_dsn()) as conn:
        row = conn.execute(
            "SELECT last_event_at FROM stream_heartbeat WHERE job_key = %s AND query_name = %s",
            (job_key, query),
        ).fetchone()
    return row and row[0]


def test_a_batch_that_advances_refreshes_its_heartbeat_at_most_every_30_s(platform, monkeypatch):
    job_key = "batch-heartbeat-test"
    monkeypatch.setattr(progress, "_DRIVER_LISTENER", None)
    progress.batch_heartbeat("q")()  # outside a driver: nothing written
    assert heartbeat_at(platform, job_key, "q") is None

    progress.PostgresProgressListener(platform, job_key)  # the driver's listener
    times = iter([0.0, 10.0, 31.0, 40.0])
    try:
        advanced = progress.batch_heartbeat("q", clock=lambda: next(times))  # starts at 0 s
        advanced()  # 10 s: too soon
        assert heartbeat_at(platform, job_key, "q") is None
        advanced()  # 31 s: written (and the clock read again: 40 s)
        assert heartbeat_at(platform, job_key, "q") is not None
    finally:
        with psycopg.connect(platform.postgres_dsn()) as conn:
            conn.execute("DELETE FROM stream_heartbeat WHERE job_key = %s", (job_key,))
