"""Benchmark of the analytics layer: `dbt build` and the dashboard's per-ticker query.

Two generated silver tables (Delta, local disk), of `rows` trades and of a tenth of that,
laid out as the stream leaves them: a day of trades after another (`trades_per_day` each).
Each is built into marts by dbt (the first build: every model from the whole lake); then
the same 100,000 new trades land on the next day and the market pipeline's scheduled build
runs (incremental models, tests scoped to what it wrote). A build that does not grow with
the lake takes about as long on both. The same one-minute OHLCV is also computed by one
plain DuckDB query over the large table, in the same run, as the baseline. The dashboard's
per-ticker query then runs for random tickers against the marts and its 95th percentile is
reported.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.analytics import DBT_PROJECT, run_dbt
from lakehouse.layout import Layout
from lakehouse.settings import Settings
from spark.jobs.market.bench.enrichment import SECTORS, generate_trades
from spark.jobs.market.bronze import KAFKA_SOURCE_SCHEMA, transform

PLAIN_OHLCV = """
SELECT symbol, time_bucket(INTERVAL '1 minute', event_time) AS bar_start,
       arg_min(price, event_time) AS open, max(price) AS high, min(price) AS low,
       arg_max(price, event_time) AS close, sum(volume) AS volume,
       sum(price * volume) / sum(volume) AS vwap, count(*) AS trade_count
FROM delta_scan('{path}') GROUP BY 1, 2
"""


def silver_trades(spark: SparkSession, rows: int, symbols: int, day: int = 0):
    """Silver-shaped trades; `day` shifts their time by days and gives them their own ids."""
    sectors = F.array(*[F.lit(s) for s in SECTORS])
    trades = generate_trades(spark, rows, symbols, seed=3)
    if day:
        trades = trades.withColumns(
            {
                "trade_id": F.concat(F.lit(f"d{day}-"), "trade_id"),
                "event_time": F.col("event_time") + F.make_interval(days=F.lit(day)),
            }
        )
    return trades.select(
        "trade_id",
        "symbol",
        "event_time",
        F.to_date("event_time").alias("event_date"),
        "price",
        "volume",
        F.concat("symbol", F.lit(" Holdings")).alias("company_name"),
        F.element_at(
            sectors, (F.pmod(F.xxhash64("symbol"), F.lit(len(SECTORS))) + 1).cast("int")
        ).alias("sector"),
        "kafka_partition",
        "kafka_offset",
        # Written two seconds after it happened, as by the stream.
        (F.col("event_time") + F.expr("INTERVAL 2 SECONDS")).alias("enriched_at"),
    )


def write_lake(
    spark: SparkSession,
    settings: Settings,
    root: Path,
    rows: int,
    symbols: int,
    trades_per_day: int,
) -> int:
    """Silver trades shaped like the pipeline's, a day after another, plus an empty
    quarantine table: the number of days written."""
    days = max(1, -(-rows // trades_per_day))
    trades = silver_trades(spark, min(rows, trades_per_day), symbols)
    for day in range(1, days):
        size = min(trades_per_day, rows - day * trades_per_day)
        trades = trades.unionByName(silver_trades(spark, size, symbols, day=day))
    trades.write.format("delta").partitionBy("event_date").save(
        str(root / "silver" / "trades_enriched")
    )
    layout = Layout(settings, lake_root=str(root))
    empty = transform(spark.createDataFrame([], KAFKA_SOURCE_SCHEMA), layout).quarantine
    empty.write.format("delta").save(str(root / "quarantine" / "market"))
    return days


# The market pipeline's models: what its scheduled build (the analytics DAG) selects.
SCHEDULED_BUILD = ["build", "--select", "tag:market"]


def timed_dbt(settings: Settings, root: Path, args: list[str], log) -> float:
    began = time.perf_counter()
    result = run_dbt(settings, args, lake_root=str(root), capture=True)
    if result.returncode != 0:
        raise RuntimeError(f"dbt {' '.join(args)} failed:\n{result.stdout[-3000:]}")
    elapsed = time.perf_counter() - began
    if args[0] == "build":
        nodes = json.loads((DBT_PROJECT / "target" / "run_results.json").read_text())
        slowest = sorted(nodes["results"], key=lambda n: -n["execution_time"])[:4]
        log(
            f"  {elapsed:.1f} s; slowest: "
            + ", ".join(
                f"{n['unique_id'].split('.')[2]} {n['execution_time']:.1f} s" for n in slowest
            )
        )
    return elapsed


def build_and_grow(
    spark: SparkSession,
    settings: Settings,
    root: Path,
    *,
    rows: int,
    added: int,
    symbols: int,
    trades_per_day: int,
    log,
) -> tuple[Settings, dict]:
    """A lake of `rows` trades, its first build, `added` trades on the next day and the
    scheduled build after them: the marts' settings and the timings."""
    shutil.rmtree(root, ignore_errors=True)
    # The bench builds its own DuckDB file, never the platform's.
    bench_settings = settings.model_copy(update={"home": root / "home"})
    log(f"writing {rows:,} silver trades over {symbols} symbols to {root.name}")
    days = write_lake(spark, settings, root, rows, symbols, trades_per_day)
    # Parsed once beforehand, as a deployment that builds again and again has it: dbt then
    # re-parses only what changed.
    timed_dbt(bench_settings, root, ["parse"], log)
    log("first dbt build: every model from the whole lake")
    full_s = timed_dbt(bench_settings, root, [*SCHEDULED_BUILD, "--full-refresh"], log)
    log(f"appending {added:,} trades on the next day, then the scheduled build")
    silver_trades(spark, added, symbols, day=days).write.format("delta").mode("append").save(
        str(root / "silver" / "trades_enriched")
    )
    incremental_s = timed_dbt(bench_settings, root, SCHEDULED_BUILD, log)
    return bench_settings, {"days": days, "full_s": full_s, "incremental_s": incremental_s}


def run(
    spark: SparkSession,
    settings: Settings,
    *,
    rows: int,
    symbols: int = 500,
    added: int = 100_000,
    trades_per_day: int = 1_000_000,
    measure_marts: Callable[[Settings], dict] | None = None,
    log=print,
) -> dict:
    bench_root = settings.home / "bench"
    small_rows = max(1000, rows // 10)
    grow = {"added": added, "symbols": symbols, "trades_per_day": trades_per_day, "log": log}
    small_root = bench_root / f"analytics-{small_rows}"
    _, small = build_and_grow(spark, settings, small_root, rows=small_rows, **grow)
    shutil.rmtree(small_root, ignore_errors=True)
    root = bench_root / f"analytics-{rows}"
    bench_settings, large = build_and_grow(spark, settings, root, rows=rows, **grow)

    log("plain DuckDB aggregation")
    con = duckdb.connect(
        config={
            "autoinstall_known_extensions": "false",
            "extension_directory": str(settings.duckdb_extension_dir),
        }
    )
    con.execute("LOAD delta")
    began = time.perf_counter()
    plain_bars = len(
        con.execute(PLAIN_OHLCV.format(path=root / "silver" / "trades_enriched")).fetchall()
    )
    duckdb_aggregate_s = time.perf_counter() - began
    con.close()

    # The serving side (the dashboard's queries) is timed by the caller on the built marts:
    # this module does not depend on the dashboard.
    serving = measure_marts(bench_settings) if measure_marts else {}
    with duckdb.connect(str(bench_settings.duckdb_path), read_only=True) as marts:
        mart_bars = marts.execute("SELECT count(*) FROM fct_ohlcv_1m").fetchone()[0]
    shutil.rmtree(root, ignore_errors=True)
    dbt_build_s = large["full_s"]
    return {
        "benchmark": "analytics",
        "rows": rows,
        "rows_small": small_rows,
        "symbols": symbols,
        "trades_per_day": trades_per_day,
        "days": large["days"],
        "rows_added_before_incremental": added,
        "dbt_build_s": round(dbt_build_s, 2),
        "dbt_build_s_small": round(small["full_s"], 2),
        # Keyed by lake size as the goals name them (1M and 10M at the default --rows).
        "dbt_incremental_build_s_1m": round(small["incremental_s"], 2),
        "dbt_incremental_build_s_10m": round(large["incremental_s"], 2),
        "incremental_10m_vs_1m": round(large["incremental_s"] / small["incremental_s"], 2),
        "incremental_10m_vs_full_10m": round(large["incremental_s"] / dbt_build_s, 2),
        "duckdb_aggregate_s": round(duckdb_aggregate_s, 2),
        "dbt_vs_duckdb": round(dbt_build_s / duckdb_aggregate_s, 2),
        **serving,
        "bars_1m": mart_bars,
        "bars_1m_plain": plain_bars,
    }
