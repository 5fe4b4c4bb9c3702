"""Helpers of the market-pipeline tests: produce, run the pipeline, read and check tables."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable

import pandas as pd
import psycopg
import pytest
from kafka import KafkaConsumer, KafkaProducer

from lakehouse.layout import Layout
from lakehouse.pipelines.market import REFERENCE_TOPIC, TRADES_TOPIC
from lakehouse.settings import PROJECT_ROOT
from spark.checkpoints import checkpoint_query_id
from tests.conftest import TEST_ENV

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
WATERMARK = "5 seconds"
SENTINEL_SYMBOL = "ZZZZZ"


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


def produce(layout: Layout, *, count: int, seed: int, start_ms: int, **options) -> dict:
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
            layout.topic(TRADES_TOPIC),
            "--reference-topic",
            layout.topic(REFERENCE_TOPIC),
            *flags,
        ],
        timeout=300,
    )
    return report["sent"]


def send_reference(platform, layout: Layout, symbol: str, company: str, event_ms: int):
    producer = KafkaProducer(bootstrap_servers=platform.kafka_bootstrap, acks="all")
    value = {
        "schema_version": 1,
        "symbol": symbol,
        "company_name": company,
        "sector": "Sentinel" if symbol == SENTINEL_SYMBOL else "Utilities",
        "event_timestamp": event_ms,
    }
    producer.send(
        layout.topic(REFERENCE_TOPIC), key=symbol.encode(), value=json.dumps(value).encode()
    )
    producer.flush()
    producer.close()


def send_sentinel(platform, layout: Layout, event_ms: int) -> None:
    """A reference far ahead in event time: the watermark then passes every real trade."""
    send_reference(platform, layout, SENTINEL_SYMBOL, "Sentinel", event_ms)


def driver_command(job: str, layout: Layout, *extra: str, master: str = "local[2]") -> list[str]:
    """The streaming driver of `job` on the layout's namespace (--param, --once ... in
    `extra`)."""
    return [
        sys.executable,
        "-m",
        "spark.driver",
        "--job",
        job,
        "--namespace",
        layout.namespace,
        "--master",
        master,
        *extra,
    ]


def pipeline_command(layout: Layout, *extra: str) -> list[str]:
    return driver_command(
        "market_pipeline",
        layout,
        "--param",
        f"market.watermark={WATERMARK}",
        "--param",
        "market.buckets=4",
        *extra,
    )


def start_pipeline(layout: Layout, *extra: str) -> subprocess.Popen:
    return start_driver(pipeline_command(layout, *extra))


def start_driver(command: list[str]) -> subprocess.Popen:
    """A streaming driver in its own process group, so a test can kill or freeze it whole."""
    return subprocess.Popen(
        command,
        env=TEST_ENV,
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def run_once(layout: Layout) -> dict:
    return run_json(pipeline_command(layout, "--once"), timeout=900)


def table(spark, layout: Layout, name: str) -> pd.DataFrame:
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


def query_id(layout: Layout, query: str) -> str:
    return checkpoint_query_id(layout.checkpoint(query))


def recorded_progress(platform, layout: Layout, query: str) -> tuple[int, int, int]:
    """(batches, input rows, rows dropped by the watermark) the progress listener stored."""
    with psycopg.connect(platform.postgres_dsn()) as conn:
        return conn.execute(
            "SELECT count(*), sum(input_rows), sum(rows_dropped_by_watermark)"
            " FROM stream_progress WHERE query_id = %s",
            (query_id(layout, query),),
        ).fetchone()


def recorded_kafka_lag(platform, layout: Layout, query: str) -> list[int | None]:
    """The Kafka records behind after each batch, in batch order, as the listener stored."""
    with psycopg.connect(platform.postgres_dsn()) as conn:
        rows = conn.execute(
            "SELECT kafka_records_behind FROM stream_progress WHERE query_id = %s"
            " ORDER BY batch_id",
            (query_id(layout, query),),
        ).fetchall()
    return [lag for (lag,) in rows]


def check_silver(spark, layout: Layout, expected_trades: int) -> pd.DataFrame:
    """Silver holds `expected_trades` trades once each: every column that passes through equal
    to the trade's first copy in bronze (Kafka order), and the company as of its time."""
    bronze = table(spark, layout, "bronze_trades")
    references = table(spark, layout, "bronze_company_reference")
    silver = table(spark, layout, "trades_enriched")
    assert silver["trade_id"].is_unique, "a trade was written twice"
    assert len(silver) == expected_trades
    first_copies = bronze.sort_values(["kafka_partition", "kafka_offset"]).drop_duplicates(
        "trade_id"
    )
    kept = first_copies[first_copies["trade_id"].isin(silver["trade_id"])]
    want = expected_enrichment(kept, references)
    got = silver.set_index("trade_id")[["company_name", "sector"]].sort_index()
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    passed_through = [c for c in silver.columns if c in bronze.columns]
    assert {"price", "volume", "event_time", "symbol", "kafka_offset"} <= set(passed_through)
    pd.testing.assert_frame_equal(
        silver.set_index("trade_id")[passed_through[1:]].sort_index(),
        kept.set_index("trade_id")[passed_through[1:]].sort_index(),
        check_dtype=False,
    )
    return silver


def check_live_bars(settings, layout: Layout, silver: pd.DataFrame) -> int:
    """The live one-minute bars in Postgres equal silver's bars by the one rule (first and
    last trade by (event_time, trade_id)), over the live window behind the newest bar:
    each batch folded in once, whatever was killed and replayed. Returns the bars compared."""
    from spark.jobs.market.live_bars import LIVE_BARS, LIVE_HOURS
    from tests.test_bars_definition import BAR_COLUMNS, assert_same_bars, normalized, oracle_bars

    trades = silver.assign(event_time=pd.to_datetime(silver["event_time"], utc=True))
    want = oracle_bars(trades, "1min")
    want = want[want["bar_start"] >= want["bar_start"].max() - pd.Timedelta(hours=LIVE_HOURS)]
    with psycopg.connect(settings.postgres_dsn()) as conn:
        rows = conn.execute(
            f"SELECT symbol, minute, open, high, low, close, volume, trade_count"
            f" FROM {layout.serving_schema}.{LIVE_BARS}"
        ).fetchall()
    got = normalized(pd.DataFrame(rows, columns=BAR_COLUMNS))
    assert_same_bars(got, want.reset_index(drop=True), "live bars vs silver")
    return len(want)


def check_bronze_values(settings, layout: Layout, bronze: pd.DataFrame) -> None:
    """Every bronze trade's fields equal the JSON message at its Kafka position."""
    consumer = KafkaConsumer(
        layout.topic(TRADES_TOPIC),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    try:
        # Raw: the topic holds malformed messages too (quarantined, so not in bronze).
        sent = {(m.partition, m.offset): m.value for m in consumer}
    finally:
        consumer.close()
    for row in bronze.itertuples(index=False):
        message = json.loads(sent[(row.kafka_partition, row.kafka_offset)])
        got = (row.trade_id, row.symbol, row.price, row.volume, row.exchange)
        want = tuple(message.get(k) for k in ("trade_id", "symbol", "price", "volume", "exchange"))
        assert got == want, (got, want)
        assert row.event_time == pd.Timestamp(message["event_timestamp"], unit="ms"), row


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(2)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


def rows(spark, layout, name: str) -> int:
    try:
        return spark.read.format("delta").load(layout.table(name)).count()
    except Exception:  # the table appears with the driver's first commit
        return -1


def serving(settings, schema: str) -> tuple[pd.DataFrame, pd.DataFrame, tuple]:
    with psycopg.connect(settings.postgres_dsn()) as conn:
        trades = pd.DataFrame(
            conn.execute(
                f"SELECT trade_id, symbol, price, volume FROM {schema}.trades_enriched"
            ).fetchall(),
            columns=["trade_id", "symbol", "price", "volume"],
        )
        bars = pd.DataFrame(
            conn.execute(
                f"SELECT symbol, minute, volume, trade_count FROM {schema}.trades_ohlcv_1m"
            ).fetchall(),
            columns=["symbol", "minute", "volume", "trade_count"],
        )
        progress = conn.execute(
            f"SELECT delta_version, rows_synced FROM {schema}.sync_progress"
        ).fetchone()
    return trades, bars, progress


def assert_bars_match(bars: pd.DataFrame, silver: pd.DataFrame) -> None:
    want = (
        silver.assign(minute=silver["event_time"].dt.floor("min"))
        .groupby(["symbol", "minute"])
        .agg(volume=("volume", "sum"), trade_count=("trade_id", "count"))
        .reset_index()
        .sort_values(["symbol", "minute"], ignore_index=True)
    )
    got = bars.assign(minute=pd.to_datetime(bars["minute"], utc=True).dt.tz_localize(None))
    got = got.sort_values(["symbol", "minute"], ignore_index=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
