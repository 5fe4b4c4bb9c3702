"""The market pipeline end to end on the real platform: Kafka -> bronze -> silver.

Each test runs on its own topics and lake prefix (MarketLayout.isolated). The producer says
what it sent; every count in the lake must reconcile with it exactly, and every enriched
trade must carry the reference a merge_asof over the whole reference history gives.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from kafka import KafkaAdminClient, KafkaProducer

from lakehouse.settings import PROJECT_ROOT
from spark.jobs.market_layout import MarketLayout
from tests.conftest import TEST_ENV

pytestmark = [pytest.mark.services, pytest.mark.spark, pytest.mark.slow]

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
WATERMARK = "5 seconds"
SENTINEL_SYMBOL = "ZZZZZ"


@pytest.fixture
def layout(platform):
    namespace = uuid.uuid4().hex[:10]
    layout = MarketLayout.isolated(platform, namespace)
    admin = KafkaAdminClient(bootstrap_servers=platform.kafka_bootstrap)
    try:
        admin.create_topics(
            {
                layout.trades_topic: {"num_partitions": 3},
                layout.reference_topic: {"num_partitions": 3},
            }
        )
    finally:
        admin.close()
    return layout


def run_json(command: list[str], timeout: float) -> dict:
    """Run a command of this project to completion; its last stdout line is a JSON report."""
    result = subprocess.run(
        command,
        env=TEST_ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=PROJECT_ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def produce(layout: MarketLayout, *, count: int, seed: int, start_ms: int, **options) -> dict:
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in options.items()]
    report = run_json(
        [
            sys.executable,
            "-m",
            "producers.market",
            "--rate",
            "0",
            "--count",
            str(count),
            "--symbols",
            "40",
            "--seed",
            str(seed),
            "--start-ms",
            str(start_ms),
            "--reference-every",
            "50",
            "--trades-topic",
            layout.trades_topic,
            "--reference-topic",
            layout.reference_topic,
            *flags,
        ],
        timeout=300,
    )
    return report["sent"]


def send_reference(platform, layout: MarketLayout, symbol: str, company: str, event_ms: int):
    producer = KafkaProducer(bootstrap_servers=platform.kafka_bootstrap, acks="all")
    value = {
        "schema_version": 1,
        "symbol": symbol,
        "company_name": company,
        "sector": "Sentinel" if symbol == SENTINEL_SYMBOL else "Utilities",
        "event_timestamp": event_ms,
    }
    producer.send(layout.reference_topic, key=symbol.encode(), value=json.dumps(value).encode())
    producer.flush()
    producer.close()


def send_sentinel(platform, layout: MarketLayout, event_ms: int) -> None:
    """A reference far ahead in event time: the watermark then passes every real trade."""
    send_reference(platform, layout, SENTINEL_SYMBOL, "Sentinel", event_ms)


def pipeline_command(layout: MarketLayout, *extra: str) -> list[str]:
    namespace = layout.lake_root.rsplit("/", 1)[-1]
    return [
        sys.executable,
        "-m",
        "spark.jobs.market_pipeline",
        "--namespace",
        namespace,
        "--master",
        "local[2]",
        "--watermark",
        WATERMARK,
        "--buckets",
        "4",
        *extra,
    ]


def run_once(layout: MarketLayout) -> dict:
    return run_json(pipeline_command(layout, "--once"), timeout=900)


def table(spark, layout: MarketLayout, name: str) -> pd.DataFrame:
    return spark.read.format("delta").load(layout.table(name)).toPandas()


def expected_enrichment(trades: pd.DataFrame, references: pd.DataFrame) -> pd.DataFrame:
    refs = references.sort_values(["event_time", "kafka_partition", "kafka_offset"])
    merged = pd.merge_asof(
        trades.sort_values("event_time")[["trade_id", "symbol", "event_time"]],
        refs[["symbol", "event_time", "company_name", "sector"]],
        on="event_time",
        by="symbol",
        direction="backward",
    )
    return merged.set_index("trade_id")[["company_name", "sector"]].sort_index()


def recorded_progress(platform, layout: MarketLayout, query: str) -> tuple[int, int, int]:
    """(batches, input rows, rows dropped by the watermark) the progress listener stored."""
    query_id = json.loads((Path(layout.checkpoint(query)) / "metadata").read_text())["id"]
    with psycopg.connect(platform.postgres_dsn()) as conn:
        return conn.execute(
            "SELECT count(*), sum(input_rows), sum(rows_dropped_by_watermark)"
            " FROM stream_progress WHERE query_id = %s",
            (query_id,),
        ).fetchone()


def check_silver(spark, layout: MarketLayout, expected_trades: int) -> pd.DataFrame:
    bronze = table(spark, layout, "bronze_trades")
    references = table(spark, layout, "bronze_company_reference")
    silver = table(spark, layout, "trades_enriched")
    assert silver["trade_id"].is_unique, "a trade was written twice"
    assert len(silver) == expected_trades
    first_copies = bronze.drop_duplicates("trade_id")
    want = expected_enrichment(
        first_copies[first_copies["trade_id"].isin(silver["trade_id"])], references
    )
    got = silver.set_index("trade_id")[["company_name", "sector"]].sort_index()
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    return silver


def test_every_record_lands_once_and_counts_reconcile(spark, platform, layout):
    # Run 1: duplicates and malformed records; nothing is late yet (the watermark starts at 0).
    first = produce(
        layout,
        count=4000,
        seed=1,
        start_ms=START_MS,
        duplicate_fraction=0.03,
        malformed_fraction=0.03,
    )
    run_once(layout)
    # Out of order: a reference older than trades already processed (but not older than the
    # watermark) must still apply to the trades after it.
    send_reference(platform, layout, "AAA", "Out Of Order Co", START_MS + 2000)
    # Run 2: late trades (an hour behind a watermark now near START_MS), then the sentinel.
    second = produce(layout, count=3000, seed=2, start_ms=START_MS + 4000, late_fraction=0.05)
    send_sentinel(platform, layout, START_MS + 24 * 3600 * 1000)
    report = run_once(layout)

    bronze = table(spark, layout, "bronze_trades")
    references = table(spark, layout, "bronze_company_reference")
    quarantine = table(spark, layout, "quarantine_market")
    assert min(first["duplicates"], first["malformed"], second["late"]) > 0  # all paths ran
    sent = {
        k: first[k] + second[k] for k in ("trades", "references", "duplicates", "late", "malformed")
    }
    # Bronze: every well-formed message once (Kafka coordinates unique), malformed quarantined.
    assert len(bronze) == sent["trades"] + sent["duplicates"] + sent["late"]
    assert len(references) == sent["references"] + 2  # + out-of-order reference + sentinel
    assert len(quarantine) == sent["malformed"]
    assert not bronze.duplicated(["kafka_topic", "kafka_partition", "kafka_offset"]).any()
    by_reason = quarantine["reason"].value_counts().to_dict()
    expected_reasons = {
        r: first["malformed_by_reason"].get(r, 0) + second["malformed_by_reason"].get(r, 0)
        for r in set(first["malformed_by_reason"]) | set(second["malformed_by_reason"])
    }
    assert by_reason == expected_reasons
    assert quarantine["raw_value"].notna().all()

    # Silver: each distinct on-time trade once, enriched as of its event time.
    silver = check_silver(spark, layout, sent["trades"])
    assert (silver["company_name"] == "Out Of Order Co").any()
    rejected = table(spark, layout, "quarantine_trades_enrichment")
    dropped_late = report["trades_enrichment"]["rows_dropped_by_watermark"]
    assert (rejected["reason"] == "duplicate_trade_id").sum() == sent["duplicates"]
    # input = accepted + quarantined + counted late drops
    assert len(bronze) == sent["trades"] + len(rejected) + dropped_late
    assert dropped_late + (rejected["reason"] == "late_trade").sum() == sent["late"]
    assert dropped_late > 0  # Spark itself dropped and counted the hour-late trades
    # The progress listener kept the same counts in Postgres, one row per batch.
    _, bronze_input, _ = recorded_progress(platform, layout, "market_bronze")
    assert bronze_input == first["total"] + second["total"] + 2
    batches, _, recorded_drops = recorded_progress(platform, layout, "trades_enrichment")
    assert batches >= 2
    assert recorded_drops == dropped_late


def test_killed_driver_restarts_from_its_checkpoint_without_loss_or_duplicates(
    spark, platform, layout
):
    sent = produce(layout, count=6000, seed=3, start_ms=START_MS)
    send_sentinel(platform, layout, START_MS + 24 * 3600 * 1000)
    driver = subprocess.Popen(
        pipeline_command(layout, "--interval", "0", "--max-offsets", "700"),
        env=TEST_ENV,
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    commits = Path(layout.checkpoint("market_bronze")) / "commits"
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and len(list(commits.glob("[0-9]*"))) < 2:
            assert driver.poll() is None, "the pipeline exited before it was killed"
            time.sleep(0.5)
        assert len(list(commits.glob("[0-9]*"))) >= 2, "bronze committed no batch in time"
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # no clean shutdown: mid-batch if it was in one
        driver.wait(30)
    run_once(layout)

    bronze = table(spark, layout, "bronze_trades")
    assert len(bronze) == sent["trades"]
    assert not bronze.duplicated(["kafka_topic", "kafka_partition", "kafka_offset"]).any()
    check_silver(spark, layout, sent["trades"])
