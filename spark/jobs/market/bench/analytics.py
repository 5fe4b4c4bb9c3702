"""Benchmark of the analytics layer: `dbt build` and the dashboard's per-ticker query.

A generated silver table (Delta, local disk) of `rows` trades is built into marts by dbt
(the first build), then 1 % more trades are appended and dbt builds again (incremental, as
every later build is); the same one-minute OHLCV is also computed by one plain DuckDB query
over the whole Delta table, in the same run, as the baseline. The dashboard's per-ticker
query then runs for random tickers against the marts and its 95th percentile is reported.
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
    spark: SparkSession, settings: Settings, root: Path, rows: int, symbols: int
) -> None:
    """Silver trades shaped like the pipeline's, plus an empty quarantine table."""
    silver_trades(spark, rows, symbols).write.format("delta").partitionBy("event_date").save(
        str(root / "silver" / "trades_enriched")
    )
    layout = Layout(settings, lake_root=str(root))
    empty = transform(spark.createDataFrame([], KAFKA_SOURCE_SCHEMA), layout).quarantine
    empty.write.format("delta").save(str(root / "quarantine" / "market"))


def run(
    spark: SparkSession,
    settings: Settings,
    *,
    rows: int,
    symbols: int = 500,
    measure_marts: Callable[[Settings], dict] | None = None,
    log=print,
) -> dict:
    root = settings.home / "bench" / f"analytics-{rows}"
    shutil.rmtree(root, ignore_errors=True)
    # The bench builds its own DuckDB file, never the platform's.
    bench_settings = settings.model_copy(update={"home": root / "home"})
    log(f"writing {rows:,} silver trades over {symbols} symbols")
    write_lake(spark, settings, root, rows, symbols)

    def timed_dbt(*args: str) -> float:
        began = time.perf_counter()
        result = run_dbt(bench_settings, list(args), lake_root=str(root), capture=True)
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

    # Parsed once beforehand, as a deployment that builds again and again has it: dbt then
    # re-parses only what changed.
    timed_dbt("parse")
    log("dbt build (first: every model from the whole lake)")
    dbt_build_s = timed_dbt("build")
    added = max(1, rows // 100)
    log(f"appending {added:,} trades to silver, then an incremental dbt build")
    silver_trades(spark, added, symbols, day=1).write.format("delta").mode("append").save(
        str(root / "silver" / "trades_enriched")
    )
    dbt_incremental_build_s = timed_dbt("build")

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
    return {
        "benchmark": "analytics",
        "rows": rows,
        "symbols": symbols,
        "rows_added_before_incremental": added,
        "dbt_build_s": round(dbt_build_s, 2),
        "dbt_incremental_build_s": round(dbt_incremental_build_s, 2),
        "duckdb_aggregate_s": round(duckdb_aggregate_s, 2),
        "dbt_vs_duckdb": round(dbt_build_s / duckdb_aggregate_s, 2),
        "dbt_incremental_vs_duckdb": round(dbt_incremental_build_s / duckdb_aggregate_s, 2),
        **serving,
        "bars_1m": mart_bars,
        "bars_1m_plain": plain_bars,
    }
