"""The progress row kept per micro-batch, from a progress report as Spark gives it."""

from datetime import UTC, datetime

from spark.progress import progress_row

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
        {"numRowsTotal": 4, "numRowsDroppedByWatermark": 2},
    ],
}


def test_progress_row_sums_state_operators_and_parses_times():
    row = progress_row(PROGRESS)
    assert row["query_id"] == PROGRESS["id"]
    assert (row["batch_id"], row["input_rows"], row["duration_ms"]) == (7, 1200, 3000)
    assert row["rows_dropped_by_watermark"] == 7
    assert row["state_rows"] == 20
    assert row["watermark"] == datetime(2026, 11, 24, 9, 59, 50, tzinfo=UTC)
    assert row["batch_time"].tzinfo is not None


def test_a_stateless_query_has_no_state_rows_and_no_drops():
    row = progress_row({**PROGRESS, "stateOperators": [], "eventTime": {}})
    assert row["state_rows"] is None
    assert row["rows_dropped_by_watermark"] == 0
    assert row["watermark"] is None
