"""The market pipeline end to end on the real platform: Kafka -> bronze -> silver.

Each test runs on its own topics and lake prefix (an isolated Layout). The producer says
what it sent; every count in the lake must reconcile with it exactly, and every enriched
trade must carry the reference a merge_asof over the whole reference history gives.
"""

from __future__ import annotations

import pytest

from control.latency import SILVER, Tables, latencies, seconds_since_epoch
from tests.market import (
    START_MS,
    check_bronze_values,
    check_live_bars,
    check_silver,
    produce,
    recorded_progress,
    run_once,
    send_reference,
    send_sentinel,
    table,
)

pytestmark = [pytest.mark.services, pytest.mark.spark, pytest.mark.slow]


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
    check_bronze_values(platform, layout, bronze)

    # Silver: each distinct on-time trade once, enriched as of its event time.
    silver = check_silver(spark, layout, sent["trades"])
    assert (silver["company_name"] == "Out Of Order Co").any()
    assert check_live_bars(platform, layout, silver) > 0
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

    # What the latency bench reads of this lake (control/latency.py): seed 1's trades with
    # the commit that added each, the batch each commit names, and that batch's live bars.
    tables = Tables(platform, layout)
    committed = tables.visible(SILVER, -1, "1-")
    assert sorted(committed["trade_id"]) == sorted(
        silver.loc[silver["trade_id"].str.startswith("1-"), "trade_id"]
    )
    assert (latencies(committed) > 0).all()
    versions = sorted(committed["_commit_version"].unique().tolist())
    batches = tables.commit_batches(SILVER, versions)
    assert sorted(batches) == versions
    ledger = tables.live_bars_times()
    live_bars_at = committed["_commit_version"].map(batches).map(ledger)
    assert live_bars_at.notna().all()
    # Each batch's live bars began before its silver commit (they are written first).
    assert (live_bars_at <= seconds_since_epoch(committed["_commit_timestamp"])).all()
