"""Serving sync and replay (issue 5) on one pipeline run: the sync copies silver into
Postgres once (re-runs and OPTIMIZE commits add nothing); a replay rebuilds a time range of
silver from bronze equal to the original run, twice, and the sync follows it unchanged."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pandas as pd
import pytest
from delta.tables import DeltaTable

from lakehouse import serving_sync
from lakehouse.drivers import connect
from lakehouse.supervision import read_state
from spark.maintenance import files_per_partition, optimize_closed_partitions
from tests.conftest import airflow_dags_test, run_cli
from tests.market import (
    START_MS,
    assert_bars_match,
    check_silver,
    produce,
    run_once,
    send_sentinel,
    serving,
    table,
)

TODAY = date.today()
BUSINESS_COLUMNS = [
    "trade_id",
    "symbol",
    "event_time",
    "event_date",
    "price",
    "volume",
    "company_name",
    "sector",
    "kafka_partition",
    "kafka_offset",
]


def business(silver: pd.DataFrame) -> pd.DataFrame:
    """Silver without `enriched_at` (when a row was written), in a stable order."""
    return silver[BUSINESS_COLUMNS].sort_values("trade_id", ignore_index=True)


def last_commit(spark, path: str) -> dict:
    return DeltaTable.forPath(spark, path).history(1).first().asDict()


@pytest.mark.services
@pytest.mark.spark
@pytest.mark.slow
def test_sync_follows_silver_exactly_once_and_a_replay_changes_nothing(spark, platform, layout):
    namespace = layout.namespace
    job = layout.registry.job("market_pipeline")
    schema = layout.serving_schema
    silver_path = layout.table("trades_enriched")
    # Duplicates in the input: the replay must keep the same first copies the stream kept.
    first = produce(layout, count=3000, seed=31, start_ms=START_MS, duplicate_fraction=0.02)
    send_sentinel(platform, layout, START_MS + 24 * 3600 * 1000)
    run_once(layout)

    # The sync DAG, through Airflow: Postgres level with silver, bars too.
    airflow_dags_test(platform, "postgres_sync", {"namespace": namespace})
    silver = check_silver(spark, layout, first["trades"])
    trades, bars, (version, synced) = serving(platform, schema)
    assert sorted(trades["trade_id"]) == sorted(silver["trade_id"])
    assert synced == len(silver)
    assert_bars_match(bars, silver)

    # Again: nothing changes.
    serving_sync.run("market", namespace)
    assert serving(platform, schema)[2] == (version, synced)

    # New data: only the new rows arrive.
    second = produce(layout, count=2000, seed=32, start_ms=START_MS + 2 * 24 * 3600 * 1000)
    send_sentinel(platform, layout, START_MS + 3 * 24 * 3600 * 1000)
    run_once(layout)
    serving_sync.run("market", namespace)
    sent = {k: first[k] + second[k] for k in ("trades", "duplicates")}
    silver = check_silver(spark, layout, sent["trades"])
    trades, bars, (version, synced) = serving(platform, schema)
    assert sorted(trades["trade_id"]) == sorted(silver["trade_id"])
    assert synced == len(silver)
    assert_bars_match(bars, silver)

    # An OPTIMIZE (no stream runs: this test is the table's only writer) commits a new
    # version without data change; the sync moves past it and adds no row.
    assert max(files_per_partition(spark, silver_path, "event_date", TODAY).values()) > 1
    assert optimize_closed_partitions(spark, silver_path, "event_date", TODAY)["files_removed"]
    serving_sync.run("market", namespace)
    trades_after, _, (version_after, synced_before) = serving(platform, schema)
    assert version_after > version
    assert synced_before == synced and len(trades_after) == len(silver)
    original = table(spark, layout, "trades_enriched")

    # The pipeline ran with --once: the driver is not meant to run, and stays stopped.
    stopped = run_cli("stream", "stop", "market_pipeline", "--namespace", namespace)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr

    times = original["event_time"].sort_values(ignore_index=True)
    start = times[len(times) // 2]
    from_time = start.tz_localize(UTC).isoformat() if start.tzinfo is None else start.isoformat()
    result = run_cli("replay", "--from", from_time, "--namespace", namespace, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    report = json.loads(result.stdout[result.stdout.rindex("{\n") :].split("\n}")[0] + "}")

    in_range = original["event_time"] >= start
    assert report["rows_written"] == in_range.sum() > 0
    assert report["rows_replaced"] == in_range.sum()
    bronze = table(spark, layout, "bronze_trades")
    bronze_in_range = bronze[bronze["event_time"] >= start]
    assert sent["duplicates"] > 0
    assert report["duplicates"] == len(bronze_in_range) - bronze_in_range["trade_id"].nunique()
    commit = last_commit(spark, silver_path)
    assert commit["version"] == report["silver_version"]
    assert (
        commit["operation"] == "WRITE"
        and "event_time >=" in commit["operationParameters"]["predicate"]
    )

    replayed = table(spark, layout, "trades_enriched")
    pd.testing.assert_frame_equal(business(replayed), business(original))
    # Only the range was rewritten: rows before it are the original files' rows.
    written_again = (
        replayed.set_index("trade_id")["enriched_at"]
        != original.set_index("trade_id")["enriched_at"].reindex(replayed["trade_id"]).to_numpy()
    )
    assert set(written_again[written_again].index) == set(original.loc[in_range, "trade_id"])

    # Again through the DAG (replay, then the serving sync): the same rows once more, and the
    # sync applies the replay's deletes and inserts without changing a served row.
    airflow_dags_test(platform, "replay", {"from_time": from_time, "namespace": namespace})
    assert last_commit(spark, silver_path)["version"] == report["silver_version"] + 1
    again = check_silver(spark, layout, sent["trades"])
    pd.testing.assert_frame_equal(business(again), business(original))
    trades, bars, (_, synced_after) = serving(platform, schema)
    assert sorted(trades["trade_id"]) == sorted(again["trade_id"])
    assert synced_after == synced_before  # no served row was new or changed
    assert_bars_match(bars, again)

    # The stream was not meant to run: the replays left it stopped.
    with connect(platform) as conn:
        state = read_state(conn, job, job.key(namespace))
    assert state.desired == "stopped" and not state.alive


@pytest.mark.services
def test_replay_refuses_a_bad_request_in_one_sentence(platform):
    for args, expected in (
        (["--from", "yesterday"], "is not an ISO time"),
        (["--from", "2026-01-01", "--table", "bronze_trades"], "cannot replay 'bronze_trades'"),
    ):
        result = run_cli("replay", *args)
        assert result.returncode == 2
        assert expected in result.stdout and "Traceback" not in result.stdout + result.stderr


def test_replay_bounds_come_from_the_enrichment_checkpoint():
    from spark.jobs.market.replay import ReplayError, consumed_version, replace_predicate

    assert consumed_version({"reservoirVersion": 7, "index": -1, "isStartingVersion": False}) == 6
    with pytest.raises(ReplayError, match="inside version 7"):
        consumed_version({"reservoirVersion": 7, "index": 3, "isStartingVersion": False})
    with pytest.raises(ReplayError):
        consumed_version({"reservoirVersion": 7, "index": -1, "isStartingVersion": True})
    day = int(datetime(2026, 1, 2, 10, tzinfo=UTC).timestamp() * 1000)
    assert replace_predicate(day, day + 1000) == (
        f"event_date >= DATE'2026-01-02' AND event_time >= timestamp_millis({day})"
        f" AND event_time < timestamp_millis({day + 1000})"
    )
