"""Benchmark of the trade enrichment against a stateless projection and a stream-stream join.

A fourth variant, `passthrough`, runs applyInPandasWithState with the same grouping and
output but a function that only hands its input back (no state, no lookup): the operator's
own cost (shuffle, sort, Arrow round trip to Python), so the enrichment's figure can be read
against what any function on this operator can reach.

All four read the same generated bronze-shaped input as streams (two micro-batches of
equal size, one file each per source), on the same Spark session, in the same run, and
write Parquet. A figure is the processed rows/s of the last micro-batch with data (the
first pays Python worker and RocksDB start-up), median over `repeat` runs.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming.state import GroupStateTimeout

from spark.jobs.market.trade_enrichment import job as enrichment

SECTORS = ["Technology", "Financials", "Energy", "Health Care", "Industrials", "Utilities"]
REFERENCE_EVERY = 200  # one reference update per this many trades, as the simulator does
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _symbol(index_col) -> F.Column:
    return F.concat(F.lit("S"), F.lpad(index_col.cast("string"), 5, "0"))


def generate_trades(spark: SparkSession, rows: int, symbols: int, seed: int) -> DataFrame:
    i = F.col("id")
    return spark.range(rows).select(
        F.concat(F.lit("b-"), i).alias("trade_id"),
        _symbol(F.pmod(F.xxhash64(i, F.lit(seed)), F.lit(symbols))).alias("symbol"),
        F.timestamp_millis(F.lit(START_MS + 1000) + i).alias("event_time"),
        (F.lit(100.0) + (i % 1000) / 10).alias("price"),
        (i % 1000 + 1).alias("volume"),
        F.lit(0).alias("kafka_partition"),
        i.alias("kafka_offset"),
    )


def generate_references(spark: SparkSession, rows: int, symbols: int, seed: int) -> DataFrame:
    """Every symbol's reference at the start, then one update per REFERENCE_EVERY trades."""
    initial = spark.range(symbols).select(
        _symbol(F.col("id")).alias("symbol"), F.timestamp_millis(F.lit(START_MS)).alias("t")
    )
    k = F.col("id")
    updates = spark.range(max(1, rows // REFERENCE_EVERY)).select(
        _symbol(F.pmod(F.xxhash64(k, F.lit(seed + 1)), F.lit(symbols))).alias("symbol"),
        F.timestamp_millis(F.lit(START_MS + 1001) + k * REFERENCE_EVERY).alias("t"),
    )
    sectors = F.array(*[F.lit(s) for s in SECTORS])
    return (
        initial.unionByName(updates)
        .withColumn("n", F.monotonically_increasing_id())
        .select(
            "symbol",
            F.col("t").alias("event_time"),
            F.concat(F.col("symbol"), F.lit(" Holdings "), F.col("n") % 10).alias("company_name"),
            F.element_at(sectors, (F.pmod(F.col("n"), F.lit(len(SECTORS))) + 1).cast("int")).alias(
                "sector"
            ),
            F.lit(0).alias("kafka_partition"),
            F.col("n").alias("kafka_offset"),
        )
    )


def write_input(spark: SparkSession, root: Path, rows: int, symbols: int, seed: int) -> None:
    """Two micro-batches per source: the first and second half of event time, one file each."""
    middle = F.timestamp_millis(F.lit(START_MS + 1000 + rows // 2))
    for name, df in (
        ("trades", generate_trades(spark, rows, symbols, seed)),
        ("references", generate_references(spark, rows, symbols, seed)),
    ):
        for half in (
            df.where(F.col("event_time") < middle),
            df.where(F.col("event_time") >= middle),
        ):
            half.coalesce(1).write.format("delta").mode("append").save(str(root / name))


def _sources(spark: SparkSession, root: Path) -> tuple[DataFrame, DataFrame]:
    def read(name: str) -> DataFrame:
        return (
            spark.readStream.format("delta")
            .option("maxFilesPerTrigger", "1")
            .load(str(root / name))
        )

    return read("trades"), read("references")


def stateless(trades: DataFrame, references: DataFrame) -> DataFrame:
    return enrichment.union_events(trades, references).select(
        "kind",
        "trade_id",
        "symbol",
        F.unix_millis("event_time").alias("event_time_ms"),
        "price",
        "volume",
        "company_name",
        "sector",
    )


def stateful(
    trades: DataFrame, references: DataFrame, buckets: int = enrichment.DEFAULT_BUCKETS
) -> DataFrame:
    return enrichment.transform(trades, references, buckets=buckets).where(
        F.col("status") == "enriched"
    )


OUTPUT_COLUMNS = list(enrichment.OUTPUT_SCHEMA.fieldNames())


def _hand_back(key, chunks: Iterator[pd.DataFrame], state) -> Iterator[pd.DataFrame]:
    for chunk in chunks:
        yield chunk.drop(columns=["kind"]).assign(status="enriched")[OUTPUT_COLUMNS]


def passthrough(
    trades: DataFrame, references: DataFrame, buckets: int = enrichment.DEFAULT_BUCKETS
) -> DataFrame:
    """The enrichment's operator and grouping with a function that does nothing."""
    return (
        enrichment.bucketed_events(trades, references, buckets=buckets)
        .groupBy("bucket")
        .applyInPandasWithState(
            _hand_back,
            enrichment.OUTPUT_SCHEMA,
            enrichment.STATE_SCHEMA,
            "append",
            GroupStateTimeout.EventTimeTimeout,
        )
        .where(F.col("status") == "enriched")
    )


def stream_stream_join(trades: DataFrame, references: DataFrame) -> DataFrame:
    """The join the seed warns about: every reference in the window matches every trade."""
    t = trades.withWatermark("event_time", enrichment.DEFAULT_WATERMARK).alias("t")
    r = references.withWatermark("event_time", enrichment.DEFAULT_WATERMARK).alias("r")
    return t.join(
        r,
        F.expr(
            "t.symbol = r.symbol AND r.event_time <= t.event_time "
            "AND r.event_time >= t.event_time - INTERVAL 1 HOUR"
        ),
    ).select("t.trade_id", "t.symbol", "t.event_time", "t.price", "r.company_name", "r.sector")


VARIANTS = {
    "stateless": stateless,
    "passthrough": passthrough,
    "enrichment": stateful,
    "join": stream_stream_join,
}
BUCKETED = ("enrichment", "passthrough")


def run_variant(spark: SparkSession, root: Path, variant: str, run: int, buckets: int) -> dict:
    out, checkpoint = root / f"out-{variant}-{run}", root / f"cp-{variant}-{run}"
    trades, references = _sources(spark, root)
    options = {"buckets": buckets} if variant in BUCKETED else {}
    query = (
        VARIANTS[variant](trades, references, **options)
        .writeStream.format("parquet")
        .option("path", str(out))
        .option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    if query.exception():
        raise RuntimeError(f"{variant} failed: {query.exception()}")
    with_data = [p for p in query.recentProgress if p["numInputRows"]]
    written = spark.read.parquet(str(out)) if out.exists() else None
    rows_out = written.count() if written is not None else 0
    distinct = written.select("trade_id").distinct().count() if written is not None else 0
    return {
        "rows_per_s": with_data[-1]["processedRowsPerSecond"],
        "batches": len(with_data),
        "rows_out": rows_out,
        "duplicate_rows": rows_out - distinct if variant != "stateless" else 0,
    }


def run(
    spark: SparkSession,
    work_dir: Path,
    *,
    rows: int,
    symbols: int,
    repeat: int = 3,
    buckets: int = enrichment.DEFAULT_BUCKETS,
    seed: int = 7,
    log=print,
) -> dict:
    root = work_dir / f"enrichment-{symbols}-{rows}"
    shutil.rmtree(root, ignore_errors=True)
    began = time.monotonic()
    log(f"generating {rows:,} trades over {symbols:,} symbols")
    write_input(spark, root, rows, symbols, seed)
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for attempt in range(repeat):
        # Interleaved so machine noise spreads over all variants alike.
        for name in VARIANTS:
            result = run_variant(spark, root, name, attempt, buckets)
            log(f"  run {attempt + 1}/{repeat} {name}: {result['rows_per_s']:,.0f} rows/s")
            results[name].append(result)
    median = {n: statistics.median(r["rows_per_s"] for r in rs) for n, rs in results.items()}
    shutil.rmtree(root, ignore_errors=True)
    return {
        "benchmark": "enrichment",
        "symbols": symbols,
        "rows": rows,
        "repeat": repeat,
        "buckets": buckets,
        "enrichment_rows_per_s": round(median["enrichment"]),
        "stateless_rows_per_s": round(median["stateless"]),
        "join_rows_per_s": round(median["join"]),
        "passthrough_rows_per_s": round(median["passthrough"]),
        "enrichment_vs_stateless": round(median["enrichment"] / median["stateless"], 3),
        "passthrough_vs_stateless": round(median["passthrough"] / median["stateless"], 3),
        "enrichment_vs_passthrough": round(median["enrichment"] / median["passthrough"], 3),
        "join_duplicate_rows": results["join"][-1]["duplicate_rows"],
        "join_rows_out": results["join"][-1]["rows_out"],
        "enrichment_duplicate_rows": results["enrichment"][-1]["duplicate_rows"],
        "enrichment_rows_out": results["enrichment"][-1]["rows_out"],
        "seconds": round(time.monotonic() - began, 1),
    }
