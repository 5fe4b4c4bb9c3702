"""One-minute bars have one definition across the platform: open is the first trade by
(event_time, trade_id), close the last. The Postgres serving bars (serving sync) and the dbt
marts must agree with a pandas oracle on silver trades that tie on event time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import psycopg
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from lakehouse.analytics import run_dbt
from lakehouse.settings import Settings

pytestmark = pytest.mark.services


def sync_serving(namespace: str) -> None:
    """The serving sync of the namespace's silver into its serving schema, in a process of
    its own: delta-rs must not share a process that forks afterwards, as pytest does."""
    from lakehouse import serving_sync

    serving_sync.run(namespace=namespace)


T0 = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
MINUTES = 7  # two five-minute bars: 14:00-14:04 and 14:05-14:06
SYMBOLS = {
    "AAA": ("Aaa Systems", "Technology"),
    "BBB": ("Bbb Bancorp", "Financials"),
    "CCC": ("Ccc Petroleum", "Energy"),
}
# The trades of a tie are written in this order; as text it is 10 < 9 < 900 < 91, so
# neither the first nor the last by trade id is the first or the last written.
TIE_SUFFIXES = ("9", "10", "91", "900")
# The first commit holds these minutes' trades but the last two of each tie; the second
# commit the rest, so the sync recomputes these minutes and meets the later ones new.
FIRST_COMMIT_MINUTES = range(5)
BAR_COLUMNS = ["symbol", "bar_start", "open", "high", "low", "close", "volume", "trade_count"]


def silver_trades() -> pd.DataFrame:
    """Silver rows in the order they are written, with the commit (1 or 2) of each.

    Every one-minute bar starts and ends with four trades at the same instant (the first
    and the last millisecond of the minute); one bar is a single such tie."""
    rows: list[dict] = []
    for partition, (symbol, (company, sector)) in enumerate(SYMBOLS.items()):
        for minute in range(MINUTES):
            start = T0 + timedelta(minutes=minute)
            lone_tie = symbol == "CCC" and minute == 3
            instants = (
                [("m", 30_000, True)]
                if lone_tie
                else [
                    ("a", 0, True),
                    ("b", 15_000, False),
                    ("c", 30_000, False),
                    ("d", 30_000, False),
                    ("e", 45_000, False),
                    ("z", 59_999, True),
                ]
            )
            for label, offset_ms, tie in instants:
                suffixes = TIE_SUFFIXES if tie else ("1",)
                for position, suffix in enumerate(suffixes):
                    early = minute in FIRST_COMMIT_MINUTES and (not tie or position < 2)
                    rows.append(
                        {
                            "trade_id": f"{symbol}-{minute:02d}-{label}-{suffix}",
                            "symbol": symbol,
                            "event_time": start + timedelta(milliseconds=offset_ms),
                            "company_name": company,
                            "sector": sector,
                            "kafka_partition": partition,
                            "commit": 1 if early else 2,
                        }
                    )
    trades = pd.DataFrame(rows)
    k = trades.groupby("symbol").cumcount()
    # Distinct prices per symbol (fewer than 101 trades each), not monotonic in time.
    trades["price"] = 100.0 + 50 * trades["kafka_partition"] + (k * 37 % 101) / 4
    trades["volume"] = (10 + k * 13 % 90).astype("int64")
    trades["kafka_offset"] = trades.index.astype("int64")
    trades["event_date"] = trades["event_time"].dt.date
    return trades


def silver_arrow(trades: pd.DataFrame) -> pa.Table:
    """The rows with silver trades_enriched's columns and types (as the enrichment job
    writes them)."""
    timestamp = pa.timestamp("us", tz="UTC")
    schema = pa.schema(
        [
            ("trade_id", pa.string()),
            ("symbol", pa.string()),
            ("event_time", timestamp),
            ("event_date", pa.date32()),
            ("price", pa.float64()),
            ("volume", pa.int64()),
            ("company_name", pa.string()),
            ("sector", pa.string()),
            ("kafka_partition", pa.int32()),
            ("kafka_offset", pa.int64()),
            ("enriched_at", timestamp),
        ]
    )
    rows = trades.assign(enriched_at=pd.Timestamp.now(tz="UTC"))
    return pa.Table.from_pandas(rows[schema.names], schema=schema, preserve_index=False)


def oracle_bars(trades: pd.DataFrame, width: str) -> pd.DataFrame:
    """The rule itself, in pandas: trades sorted by (event_time, trade_id as text)."""
    ordered = trades.sort_values(["event_time", "trade_id"])
    ordered = ordered.assign(bar_start=ordered["event_time"].dt.floor(width))
    bars = ordered.groupby(["symbol", "bar_start"], as_index=False).agg(
        open=("price", "first"),
        high=("price", "max"),
        low=("price", "min"),
        close=("price", "last"),
        volume=("volume", "sum"),
        trade_count=("trade_id", "count"),
    )
    return normalized(bars)


def normalized(bars: pd.DataFrame) -> pd.DataFrame:
    """BAR_COLUMNS in one order and one set of types, whatever the source."""
    bars = bars[BAR_COLUMNS].copy()
    bars["bar_start"] = pd.to_datetime(bars["bar_start"], utc=True).dt.as_unit("us")
    bars = bars.astype(
        {c: "float64" for c in ("open", "high", "low", "close")}
        | {"volume": "int64", "trade_count": "int64"}
    )
    return bars.sort_values(["symbol", "bar_start"], ignore_index=True)


def assert_same_bars(got: pd.DataFrame, want: pd.DataFrame, what: str) -> None:
    keys = ["symbol", "bar_start"]
    merged = got.merge(want, on=keys, how="outer", suffixes=("", "_want"), indicator=True)
    values = BAR_COLUMNS[2:]
    differs = (merged["_merge"] != "both") | pd.concat(
        [merged[c] != merged[f"{c}_want"] for c in values], axis=1
    ).any(axis=1)
    shown = merged.loc[
        differs, [*keys, *(f"{c}{s}" for c in ("open", "close") for s in ("", "_want"))]
    ]
    if differs.any():
        pytest.fail(f"{what}: {differs.sum()} of {len(want)} bars differ\n{shown}")


def serving_bars(settings: Settings, schema: str) -> pd.DataFrame:
    with psycopg.connect(settings.postgres_dsn()) as conn:
        rows = conn.execute(
            "SELECT symbol, minute, open, high, low, close, volume, trade_count"
            f" FROM {schema}.trades_ohlcv_1m"
        ).fetchall()
    return normalized(pd.DataFrame(rows, columns=BAR_COLUMNS))


def mart_bars(duckdb_path: Path, model: str) -> pd.DataFrame:
    with duckdb.connect(str(duckdb_path), read_only=True) as con:
        bars = con.execute(f"SELECT {', '.join(BAR_COLUMNS)} FROM {model}").df()
    return normalized(bars)


def assert_ties_decide(trades: pd.DataFrame, want: pd.DataFrame) -> None:
    """The test's point: at each bar's first and at its last instant several trades with
    different prices tie, and the order they were written in picks another open and close
    than the rule, so event time alone cannot decide them."""
    trades = trades.assign(minute=trades["event_time"].dt.floor("1min"))
    bars = trades.groupby(["symbol", "minute"])
    for edge in ("min", "max"):
        at_edge = trades[trades["event_time"] == bars["event_time"].transform(edge)]
        prices = at_edge.groupby(["symbol", "minute"])["price"].nunique()
        assert len(prices) == len(want) and (prices >= 2).all()
    written = trades.sort_values("event_time", kind="stable").groupby(["symbol", "minute"])
    assert (written["price"].first().to_numpy() != want["open"].to_numpy()).all()
    assert (written["price"].last().to_numpy() != want["close"].to_numpy()).all()


def test_serving_and_marts_bars_follow_one_tie_rule(platform: Settings, tmp_path: Path):
    trades = silver_trades()
    want_1m = oracle_bars(trades, "1min")
    assert len(want_1m) == MINUTES * len(SYMBOLS)
    assert_ties_decide(trades, want_1m)

    # Silver on the platform's S3, in two commits, with the change feed the sync reads.
    namespace = "bars" + uuid.uuid4().hex[:8]
    lake_root = f"{platform.lake_uri}/isolated/{namespace}"
    silver_uri = f"{lake_root}/silver/trades_enriched".replace("s3a://", "s3://", 1)
    schema = f"serving_{namespace}"
    first = trades[trades["commit"] == 1]
    write_deltalake(
        silver_uri,
        silver_arrow(first),
        partition_by=["event_date"],
        configuration={"delta.enableChangeDataFeed": "true"},
        storage_options=platform.lake_storage_options,
    )
    # First run: the snapshot, every minute new (its bars from the range itself).
    sync_serving(namespace)
    assert_same_bars(serving_bars(platform, schema), oracle_bars(first, "1min"), "first sync")
    write_deltalake(
        silver_uri,
        silver_arrow(trades[trades["commit"] == 2]),
        mode="append",
        storage_options=platform.lake_storage_options,
    )
    # Second run: the change feed; minutes 0-4 had trades (recomputed in Postgres from the
    # stored trades), minutes 5-6 are new (their bars from the range).
    sync_serving(namespace)
    served = serving_bars(platform, schema)

    # The marts, into a DuckDB file and dbt target of this test's own.
    marts = platform.model_copy(update={"home": tmp_path})

    def dbt(*args: str) -> str:
        paths = ["--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")]
        result = run_dbt(marts, [*args, *paths], lake_root=lake_root, capture=True)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        return result.stdout

    # dim_symbol: the bars' relationship tests point at it.
    dbt("build", "--select", "+fct_ohlcv_5m", "fct_ohlcv_1h", "+dim_symbol", "--full-refresh")
    mart_1m = mart_bars(marts.duckdb_path, "fct_ohlcv_1m")
    # The incremental path: the newest two minutes again from trades, the rest as context.
    lookback = "{lake_lookback: '1 minute'}"
    assert "incremental model main.fct_ohlcv_1m" in dbt(
        "build", "--select", "fct_ohlcv_1m", "--vars", lookback
    )
    incremental_1m = mart_bars(marts.duckdb_path, "fct_ohlcv_1m")

    assert_same_bars(served, want_1m, "serving trades_ohlcv_1m vs the rule")
    assert_same_bars(mart_1m, want_1m, "fct_ohlcv_1m vs the rule")
    assert_same_bars(mart_1m, served, "fct_ohlcv_1m vs serving trades_ohlcv_1m")
    assert_same_bars(incremental_1m, want_1m, "fct_ohlcv_1m after an incremental build")
    for model, width in (("fct_ohlcv_5m", "5min"), ("fct_ohlcv_1h", "1h")):
        want = oracle_bars(trades, width)
        assert_same_bars(mart_bars(marts.duckdb_path, model), want, f"{model} vs the rule")
