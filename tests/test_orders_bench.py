"""The orders bench: its input and what it must give (without Spark, the expected figures
checked against the state function itself), the shared machinery's arithmetic, and one
tiny run on a local Spark session (no platform)."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import Row

from spark import bench_common
from spark.jobs.orders import bench
from spark.jobs.orders import matching_state as m

WATERMARK_MS = 120_000
# One order a second: the input spans more than timeout + watermark delay in a few thousand
# rows, so orders close, expire and leave the state within it.
SLOW = 1.0


def frame(rows: int, orders_per_s: float = SLOW) -> tuple[pa.Table, pd.DataFrame, dict]:
    table, expected = bench.generate_events(
        rows, 3, orders_per_s=orders_per_s, watermark_ms=WATERMARK_MS
    )
    df = table.to_pandas()
    df["t"] = table.column("event_time").cast(pa.int64()).to_numpy()
    return table, df, expected


def test_events_are_in_event_time_order_with_each_orders_events_in_its_window():
    table, df, expected = frame(20_000, orders_per_s=20)
    assert table.num_rows == 20_000 and table.schema.field("event_time").type.tz == "UTC"
    assert df["t"].is_monotonic_increasing
    assert df["order_id"].str.fullmatch(r"o-[0-9a-f]{16}").all()
    assert set(df["event_type"]) == set(bench.EVENT_TYPES)
    assert (df["amount"] > 0).all()
    by_order = df.groupby("order_id", sort=False)
    assert by_order.ngroups == expected["orders"]
    # Orders open at the fixed rate; one event of each type at most; inside the window.
    firsts = by_order["t"].min().sort_values()
    assert firsts.diff().dropna().eq(50).all()
    assert not df.duplicated(["order_id", "event_type"]).any()
    assert (by_order["t"].max() - by_order["t"].min()).max() <= bench.MAX_SPAN_MS
    assert bench.MAX_SPAN_MS < bench.TIMEOUT_MS


def test_the_plans_come_in_their_shares():
    _, df, _ = frame(200_000, orders_per_s=20)
    kinds = df.pivot_table(index="order_id", columns="event_type", values="t", aggfunc="min")
    amounts = df.pivot_table(index="order_id", columns="event_type", values="amount")
    # The orders not cut short by the end of the input.
    whole = kinds.min(axis=1) < df["t"].max() - bench.MAX_SPAN_MS
    kinds, amounts = kinds[whole], amounts[whole]
    both = kinds["order_created"].notna() & kinds["payment_received"].notna()
    payment_first = (kinds["payment_received"] < kinds["order_created"])[both].mean()
    assert 0.18 < payment_first < 0.22
    mismatch = (amounts["order_created"] != amounts["payment_received"])[both].mean()
    assert 0.045 < mismatch < 0.065  # 5 % of all orders, 5.4 % of those with both
    one_sided = kinds[["order_created", "payment_received"]].notna().sum(axis=1) == 1
    assert 0.04 < (one_sided & kinds["order_cancelled"].isna()).mean() < 0.06
    assert 0.04 < kinds["order_cancelled"].notna().mean() < 0.06
    assert 0.065 < kinds["payment_refunded"].notna().mean() < 0.085  # refund + cancel_paid


def replay(df: pd.DataFrame, batch_rows: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The state function on the input as Spark runs it in one bucket: batch k sees the
    watermark of the batches before it, and a last call without data the final one."""
    events = df.assign(event_time_ms=df["t"])[list(m.INPUT_COLUMNS)]
    state, outputs, watermark = m.empty_state(), [], 0
    for offset in range(0, len(events), batch_rows):
        batch = events.iloc[offset : offset + batch_rows]
        result = m.step(state, batch, watermark, bench.TIMEOUT_MS)
        state = result.state
        outputs.append(result.output)
        watermark = max(watermark, int(batch["event_time_ms"].max()) - WATERMARK_MS)
    result = m.step(state, [], watermark, bench.TIMEOUT_MS)
    outputs.append(result.output)
    return pd.concat(outputs, ignore_index=True), result.state


def test_the_expected_figures_are_what_the_state_function_gives():
    _, df, expected = frame(12_000)
    assert df["t"].iloc[-1] - df["t"].iloc[0] > 2 * bench.TIMEOUT_MS + WATERMARK_MS
    output, state = replay(df, 3_000)
    assert (output["status"] == m.EXPIRED).sum() == expected["expired_orders"] > 0
    assert (output["version"] == 1).sum() == expected["orders"]
    assert m.open_count(state) == expected["open_orders"]
    assert len(state) == expected["held_orders"] < expected["orders"]
    # What stays open is the last timeout's orders and one watermark delay's more.
    extra = expected["open_orders"] - expected["open_orders_bound"]
    assert extra == pytest.approx(SLOW * WATERMARK_MS / 1000, abs=2)


def test_input_is_one_file_per_batch_in_order(tmp_path):
    expected = bench.write_input(tmp_path / "in", 10_000, 3_000, 3, SLOW, WATERMARK_MS)
    files = sorted((tmp_path / "in").iterdir(), key=lambda path: path.stat().st_mtime)
    assert [path.name for path in files] == [f"part-{n:05d}.parquet" for n in range(4)]
    assert [pq.read_metadata(path).num_rows for path in files] == [3_000, 3_000, 3_000, 1_000]
    assert pq.read_schema(files[0]).names == bench.EVENT_SCHEMA.fieldNames()
    assert expected["orders"] > 0


def test_steady_rate_and_observed_metrics():
    progress = [
        {"numInputRows": 100, "durationMs": {"triggerExecution": 9_000}},
        {
            "numInputRows": 100,
            "durationMs": {"triggerExecution": 1_000},
            "observedMetrics": {bench.CHECK: Row(expired=2, orders=None)},
        },
        {
            "numInputRows": 100,
            "durationMs": {"triggerExecution": 1_000},
            "observedMetrics": {bench.CHECK: {"expired": 3, "orders": 7}},
        },
        {"numInputRows": 0, "durationMs": {"triggerExecution": 5_000}, "observedMetrics": {}},
    ]
    assert bench_common.steady(progress) == (200, 2.0)
    assert bench_common.observed(progress, bench.CHECK) == {"expired": 5, "orders": 7}
    assert bench_common.observed(progress, "other") == {}


def test_a_wrong_matching_output_fails_the_run():
    expected = {"expired_orders": 5, "orders": 7}
    good = {"observedMetrics": {bench.CHECK: {"expired": 5, "orders": 7}}}
    bench.check_matching({"progress": [good]}, expected)
    bad = {"observedMetrics": {bench.CHECK: {"expired": 4, "orders": 7}}}
    with pytest.raises(RuntimeError, match="4 expired orders"):
        bench.check_matching({"progress": [bad]}, expected)


@pytest.mark.services
@pytest.mark.spark
@pytest.mark.slow
def test_a_tiny_run_gives_every_figure(spark, tmp_path):
    """All three variants on the tests' Spark session (the bench reads and writes local
    files only); the matching run checks its own output."""
    result = bench.run(
        spark,
        tmp_path,
        rows=12_000,
        batch_rows=3_000,
        repeat=1,
        orders_per_s=SLOW,
        seed=3,
        log=print,
    )
    _, _, expected = frame(12_000)
    for name in (
        "matching_rows_per_s",
        "passthrough_rows_per_s",
        "stateless_rows_per_s",
        "matching_vs_passthrough",
    ):
        assert result[name] > 0
    assert result["open_orders"] == expected["open_orders"]
    assert result["open_orders_bound"] == expected["open_orders_bound"]
    assert 0 < result["matching_rows_out"] < result["rows"]
    assert not (tmp_path / "orders-12000").exists()
