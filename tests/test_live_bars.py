"""Live one-minute bars: each micro-batch's part of a bar folded into Postgres once, ending
equal to the one bar rule (open: first trade by (event_time, trade_id), close: last) however
the trades of a minute, ties included, fall into batches, and whichever batch is replayed."""

from __future__ import annotations

import uuid

import pandas as pd
import psycopg
import pytest

from lakehouse.migrations import upgrade_serving
from spark.jobs.market.live_bars import LIVE_BARS, LIVE_TARGET, partial_bars
from spark.postgres_sink import upsert_batch
from tests.test_bars_definition import BAR_COLUMNS, assert_same_bars, normalized, oracle_bars
from tests.test_bars_definition import silver_trades as tied_trades

pytestmark = [pytest.mark.services, pytest.mark.spark]


def live_bars(settings, schema: str) -> pd.DataFrame:
    with psycopg.connect(settings.postgres_dsn()) as conn:
        rows = conn.execute(
            "SELECT symbol, minute, open, high, low, close, volume, trade_count,"
            f" notional / volume AS vwap FROM {schema}.{LIVE_BARS}"
        ).fetchall()
    frame = pd.DataFrame(rows, columns=[*BAR_COLUMNS, "vwap"])
    return frame


def test_batches_fold_into_the_rule_once(platform, spark):
    trades = tied_trades()
    schema = "live_" + uuid.uuid4().hex[:8]
    upgrade_serving(platform, schema)
    # Three batches: the commits of the tie test, the second split again by position, so
    # both ends of a tie and both halves of a minute arrive in different batches.
    second = trades[trades["commit"] == 2]
    batches = [
        trades[trades["commit"] == 1],
        second.iloc[::2],
        second.iloc[1::2],
    ]
    columns = ["trade_id", "symbol", "event_time", "price", "volume"]

    def apply(batch: pd.DataFrame, batch_id: int) -> bool:
        rows = partial_bars(spark.createDataFrame(batch[columns])).toArrow()
        return upsert_batch(platform, schema, LIVE_TARGET, rows, "live_test", batch_id)

    assert [apply(batch, n) for n, batch in enumerate(batches)] == [True, True, True]
    # A replayed batch (a crash after its commit) finds its ledger row and adds nothing.
    assert apply(batches[1], 1) is False
    got = live_bars(platform, schema)
    assert_same_bars(normalized(got), oracle_bars(trades, "1min"), "live bars vs the rule")
    vwap = trades.assign(notional=trades["price"] * trades["volume"]).groupby(
        ["symbol", trades["event_time"].dt.floor("1min")]
    )
    want_vwap = (vwap["notional"].sum() / vwap["volume"].sum()).sort_index().to_numpy()
    got_vwap = got.sort_values(["symbol", "bar_start"])["vwap"].to_numpy()
    assert got_vwap == pytest.approx(want_vwap, rel=1e-12)

    # A batch seven hours later prunes the bars past the live window (by event time).
    later = trades.head(1).assign(
        trade_id="late-1", event_time=trades["event_time"].max() + pd.Timedelta(hours=7)
    )
    assert apply(later, 3)
    assert len(live_bars(platform, schema)) == 1
