"""The scheduled dbt build does not grow with the lake: its incremental marts end equal to a
full rebuild, and its tests cover what it read and wrote while a full test covers the lake.

Silver is written with delta-rs to local disk, so this runs dbt alone (no Spark, no S3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from lakehouse.analytics import run_dbt
from lakehouse.settings import Settings
from tests.test_bars_definition import silver_arrow

pytestmark = pytest.mark.services

SYMBOLS = {
    "AAA": ("Aaa Systems", "Technology"),
    "BBB": ("Bbb Bancorp", "Financials"),
    "CCC": ("Ccc Petroleum", "Energy"),
}
# The first commit's trades end at 23:50; the next ones cross the hour and midnight.
DAY_ONE = datetime(2026, 3, 2, 22, 0, tzinfo=UTC)
# Every model the market pipeline's scheduled build writes incrementally, with its key.
INCREMENTAL = {
    "fct_ohlcv_1m": "bar_id",
    "fct_ohlcv_5m": "bar_id",
    "fct_ohlcv_1h": "bar_id",
    "fct_sector_1m": "sector_bar_id",
    "fct_symbol_daily": "symbol_day_id",
}
MARTS = {**INCREMENTAL, "dim_symbol": "symbol", "mart_top_movers": "symbol"}
SCHEDULED = ["build", "--select", "tag:market"]


def trades(first: datetime, last: datetime, step_s: int, tag: str) -> pd.DataFrame:
    """A trade per symbol every `step_s` seconds from `first` up to `last`; `tag` keeps the
    ids of separate calls apart."""
    rows = []
    instants = pd.date_range(first, last, freq=f"{step_s}s", inclusive="left")
    for n, instant in enumerate(instants):
        for k, (symbol, (company, sector)) in enumerate(SYMBOLS.items()):
            rows.append(
                {
                    "trade_id": f"{tag}-{n}-{symbol}",
                    "symbol": symbol,
                    "event_time": instant,
                    "event_date": instant.date(),
                    "price": 100.0 + k * 10 + (n * 7 + k * 3) % 23 / 10,
                    "volume": 1 + (n + k) % 50,
                    "company_name": company,
                    "sector": sector,
                    "kafka_partition": k,
                    "kafka_offset": n,
                }
            )
    return pd.DataFrame(rows)


def marts(path: Path) -> dict[str, pd.DataFrame]:
    """Every market mart, rows ordered by key, without built_at (which build wrote a row)."""
    with duckdb.connect(str(path), read_only=True) as con:
        return {
            name: con.execute(f"SELECT * EXCLUDE (built_at) FROM {name} ORDER BY {key}").df()
            if name in INCREMENTAL
            else con.execute(f"SELECT * FROM {name} ORDER BY {key}").df()
            for name, key in MARTS.items()
        }


@pytest.fixture
def lake(platform: Settings, tmp_path: Path):
    """A local silver table of its own, its DuckDB file and dbt target: (append, dbt)."""
    silver = tmp_path / "lake" / "silver" / "trades_enriched"
    quarantine = tmp_path / "lake" / "quarantine" / "market"
    settings = platform.model_copy(update={"home": tmp_path / "home"})
    schema = pa.schema(
        [
            ("kafka_topic", pa.string()),
            ("kafka_partition", pa.int32()),
            ("kafka_offset", pa.int64()),
            ("raw_value", pa.string()),
            ("reason", pa.string()),
            ("ingested_at", pa.timestamp("us", tz="UTC")),
        ]
    )
    write_deltalake(str(quarantine), schema.empty_table())

    def append(frame: pd.DataFrame) -> None:
        write_deltalake(
            str(silver), silver_arrow(frame), mode="append", partition_by=["event_date"]
        )

    def dbt(*args: str, check: bool = True):
        paths = ["--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")]
        result = run_dbt(settings, [*args, *paths], lake_root=str(tmp_path / "lake"), capture=True)
        if check:
            assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        return result

    dbt.target = tmp_path / "target"
    dbt.duckdb_path = settings.duckdb_path
    return append, dbt


def compiled_test(target: Path, name: str) -> str:
    return next(target.glob(f"run/**/{name}.sql")).read_text()


def test_the_scheduled_build_equals_a_full_rebuild(lake):
    append, dbt = lake
    append(trades(DAY_ONE, DAY_ONE + timedelta(minutes=110), 20, "a"))
    dbt("build", "--select", "tag:market", "--full-refresh")

    # Late trades inside the lookback, then trades across the hour and midnight, in two
    # scheduled builds (the second with nothing new in the trades' lookback but time).
    append(
        pd.concat(
            [
                trades(DAY_ONE + timedelta(minutes=104), DAY_ONE + timedelta(minutes=106), 7, "b"),
                trades(DAY_ONE + timedelta(minutes=110), DAY_ONE + timedelta(minutes=135), 20, "c"),
            ]
        )
    )
    build = dbt(*SCHEDULED).stdout
    for model in INCREMENTAL:
        assert f"incremental model main.{model}" in build, model
    append(trades(DAY_ONE + timedelta(minutes=135), DAY_ONE + timedelta(minutes=150), 20, "d"))
    dbt(*SCHEDULED)
    scheduled = marts(dbt.duckdb_path)

    # What the scheduled build tested: the trades from the lookback on, the rows it wrote.
    unique_trades = compiled_test(dbt.target, "unique_stg_trades_trade_id")
    # The newest bar before the last build was 00:14, so it read from 10 minutes before.
    assert "event_time >= timestamp '2026-03-03 00:04:00'" in unique_trades
    assert "built_at = timestamp '" in compiled_test(dbt.target, "unique_fct_ohlcv_1h_bar_id")
    with duckdb.connect(str(dbt.duckdb_path), read_only=True) as con:
        written = con.execute(
            "SELECT count(*), min(bar_start) FROM fct_ohlcv_1m"
            " WHERE built_at = (SELECT max(built_at) FROM fct_ohlcv_1m)"
        ).fetchone()
    # The last build rewrote the bars from 00:04 to 00:29, not the ones before them.
    assert written == (26 * len(SYMBOLS), datetime(2026, 3, 3, 0, 4, tzinfo=UTC))

    dbt("build", "--select", "tag:market", "--full-refresh")
    full = marts(dbt.duckdb_path)
    assert len(full["fct_symbol_daily"]) == 2 * len(SYMBOLS)
    assert len(full["fct_ohlcv_1h"]) == 3 * len(SYMBOLS)
    for name in MARTS:
        pd.testing.assert_frame_equal(scheduled[name], full[name], check_exact=False, rtol=1e-9)


def test_scheduled_tests_cover_new_trades_and_a_full_test_the_lake(lake):
    append, dbt = lake
    old = trades(DAY_ONE, DAY_ONE + timedelta(minutes=60), 20, "a")
    append(old)
    dbt("build", "--select", "tag:market", "--full-refresh")

    # A trade id used an hour ago, again on an old trade: outside what the build reads.
    append(old.head(1).assign(price=1.0))
    new = trades(DAY_ONE + timedelta(minutes=60), DAY_ONE + timedelta(minutes=65), 20, "b")
    append(new)
    dbt(*SCHEDULED)
    full_test = dbt("test", "--select", "stg_trades", check=False)
    assert full_test.returncode == 1
    assert "FAIL 1 unique_stg_trades_trade_id" in full_test.stdout

    # A trade id used minutes ago, again on a new trade: the scheduled build reads both (a
    # duplicate across its bound is the full test's to find).
    recent = trades(DAY_ONE + timedelta(minutes=65), DAY_ONE + timedelta(minutes=66), 20, "c")
    append(recent.assign(trade_id=new["trade_id"].iloc[-1]).head(1))
    scheduled = dbt(*SCHEDULED, check=False)
    assert scheduled.returncode == 1
    assert "FAIL 1 unique_stg_trades_trade_id" in scheduled.stdout


def test_marts_stored_before_build_stamps_are_rebuilt_whole_once(lake):
    """Marts built by an earlier version (no built_at, no sector_bar_id, no daily rollup)
    are rebuilt whole by the next scheduled build instead of gaining duplicate rows."""
    append, dbt = lake
    append(trades(DAY_ONE, DAY_ONE + timedelta(minutes=30), 20, "a"))
    dbt("build", "--select", "tag:market", "--full-refresh")
    with duckdb.connect(str(dbt.duckdb_path)) as con:
        for name in INCREMENTAL:
            con.execute(f"ALTER TABLE {name} DROP COLUMN built_at")
        con.execute("ALTER TABLE fct_sector_1m DROP COLUMN sector_bar_id")
        con.execute("DROP TABLE fct_symbol_daily")
    append(trades(DAY_ONE + timedelta(minutes=30), DAY_ONE + timedelta(minutes=40), 20, "b"))
    dbt(*SCHEDULED)
    upgraded = marts(dbt.duckdb_path)
    dbt("build", "--select", "tag:market", "--full-refresh")
    full = marts(dbt.duckdb_path)
    for name in MARTS:
        pd.testing.assert_frame_equal(upgraded[name], full[name], check_exact=False, rtol=1e-9)
