"""dbt build over lake data the real pipeline wrote: models, tests, docs and freshness."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from pyspark.sql import functions as F

from lakehouse.analytics import DBT_PROJECT, run_dbt
from lakehouse.layout import Layout
from tests.conftest import airflow_dags_test, isolated_layout
from tests.market import query_id
from tests.test_market_pipeline import START_MS, produce, run_once, send_sentinel, table

pytestmark = [pytest.mark.services, pytest.mark.spark, pytest.mark.slow]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
DBT_TARGET = DBT_PROJECT / "target"


@pytest.fixture(scope="module")
def lake(platform):
    """An isolated lake with bronze and silver written by the market pipeline."""
    layout = isolated_layout(platform, "market", prefix="dbt")
    # Three minutes of event time, so there are several one-minute bars per symbol.
    produce(layout, count=4000, seed=11, start_ms=START_MS, malformed_fraction=0.01, step_ms=45)
    send_sentinel(platform, layout, START_MS + 24 * 3600 * 1000)
    run_once(layout)
    return layout


@pytest.fixture(scope="module")
def built(platform, lake):
    """`dbt build` over that lake, once for the module (the dashboard test reads its marts).
    A full refresh: the platform's DuckDB file may hold incremental marts of an earlier
    run's lake."""
    build = ["build", "--full-refresh", "--select", "tag:market"]
    return run_dbt(platform, build, lake_root=lake.lake_root, capture=True)


def test_dbt_build_passes_and_bars_match_the_silver_trades(platform, spark, lake, built):
    assert built.returncode == 0, built.stdout[-4000:]
    assert "ERROR=0" in built.stdout

    silver = table(spark, lake, "trades_enriched")
    with duckdb.connect(str(platform.duckdb_path), read_only=True) as con:
        bars = con.execute(
            "SELECT symbol, sum(trade_count), max(high), min(low), sum(volume)"
            " FROM fct_ohlcv_1m GROUP BY symbol ORDER BY symbol"
        ).fetchall()
        minutes = con.execute("SELECT count(DISTINCT bar_start) FROM fct_ohlcv_1m").fetchone()[0]
    expected = (
        silver.groupby("symbol")
        .agg(
            n=("trade_id", "count"),
            high=("price", "max"),
            low=("price", "min"),
            volume=("volume", "sum"),
        )
        .sort_index()
    )
    assert [b[0] for b in bars] == list(expected.index)
    for symbol, count, high, low, volume in bars:
        row = expected.loc[symbol]
        assert (count, high, low, volume) == (row.n, row.high, row.low, row.volume)
    assert minutes >= 3


def test_the_daily_dag_tests_the_whole_lake(platform, lake, built):
    """analytics_dbt_full_test through Airflow: the market's tests over every trade (no
    scoping `where`), the other pipelines' left out by the filter."""
    assert built.returncode == 0
    conf = {"namespace": lake.namespace, "pipelines": ["market"]}
    output = airflow_dags_test(platform, "analytics_dbt_full_test", conf)
    assert "Done. PASS=" in output and " ERROR=0 " in output
    unique = next(DBT_TARGET.glob("run/**/unique_stg_trades_trade_id.sql")).read_text()
    assert '"stg_trades"' in unique and "dbt_subquery" not in unique


def artefact(name: str, since: datetime) -> dict:
    """A dbt artefact of the project's target folder, written by a run that began after
    `since` (not one left by an earlier run)."""
    content = json.loads((DBT_TARGET / name).read_text())
    generated = datetime.fromisoformat(content["metadata"]["generated_at"])
    assert generated >= since, f"{name} is from {generated}, before this run"
    return content


def freshness(platform, lake_root: str) -> tuple[int, dict[str, dict]]:
    """`dbt source freshness` of the lake sources: its exit code and sources.json's result
    per source table."""
    started = datetime.now(UTC)
    select = ["source", "freshness", "--select", "source:lake"]
    result = run_dbt(platform, select, lake_root=lake_root, capture=True)
    results = artefact("sources.json", started)["results"]
    return result.returncode, {r["unique_id"].split(".")[-1]: r for r in results}


PERIOD_S = {"minute": 60, "hour": 3600, "day": 86400}


def threshold_s(criterion: dict) -> int:
    return criterion["count"] * PERIOD_S[criterion["period"]]


def test_dbt_docs_and_source_freshness(platform, spark, lake, built):
    assert built.returncode == 0
    root = lake.lake_root
    started = datetime.now(UTC)
    docs = run_dbt(platform, ["docs", "generate"], lake_root=root, capture=True)
    assert docs.returncode == 0, docs.stdout[-3000:]
    manifest = artefact("manifest.json", started)
    catalog = artefact("catalog.json", started)
    assert manifest["metadata"]["invocation_id"] == catalog["metadata"]["invocation_id"]
    assert not catalog.get("errors"), catalog["errors"]

    # The market tag is given by folder (dbt_project.yml): every .sql file under a market/
    # folder of models/ is one of its models, and nothing else is.
    files = {path.stem for path in (DBT_PROJECT / "models").glob("**/market/*.sql")}
    assert {"stg_trades", "fct_ohlcv_1m"} <= files
    models = {
        node["name"]: unique_id
        for unique_id, node in manifest["nodes"].items()
        if node["resource_type"] == "model" and "market" in node["tags"]
    }
    assert set(models) == files
    for name, unique_id in models.items():
        # The catalog read each model's relation in DuckDB: its columns, as built.
        columns = {c.lower() for c in catalog["nodes"][unique_id]["columns"]}
        assert columns, f"{name} has no columns in the catalog"
        documented = set(manifest["nodes"][unique_id]["columns"])
        assert documented <= columns, f"{name} documents columns it lacks: {documented - columns}"

    # The freshness each lake source declares, as dbt parsed it.
    sources = {
        source["name"]: source
        for source in manifest["sources"].values()
        if source["source_name"] == "lake"
    }
    assert set(sources) == {"trades_enriched", "quarantine_market"}
    code, fresh = freshness(platform, root)
    assert code == 0
    assert set(fresh) == set(sources)
    for name, result in fresh.items():
        # The pipeline wrote these minutes ago (loaded_at_field is its processing time).
        assert result["status"] == "pass", (name, result)
        assert result["max_loaded_at"] and result["max_loaded_at_time_ago_in_s"] < 3600
        assert result["criteria"]["warn_after"] == sources[name]["freshness"]["warn_after"]

    # A stale copy of the lake: a few rows of each source with its loaded_at_field moved
    # back past the source's error_after (trades) or between warn_after and error_after
    # (quarantine). The test lake's event times are old, but its load times are not.
    stale = Layout(platform, lake_root=f"{root}_stale")
    wanted = {"trades_enriched": "error", "quarantine_market": "warn"}
    ages = {}
    for name, status in wanted.items():
        criteria = sources[name]["freshness"]
        warn_s, error_s = (threshold_s(criteria[k]) for k in ("warn_after", "error_after"))
        ages[name] = error_s + 3600 if status == "error" else (warn_s + error_s) // 2
        column = sources[name]["loaded_at_field"]
        rows = spark.read.format("delta").load(lake.table(name)).limit(5)
        moved = F.expr(f"current_timestamp() - INTERVAL {ages[name]} SECONDS")
        rows.withColumn(column, moved).write.format("delta").mode("overwrite").save(
            stale.table(name)
        )
    code, results = freshness(platform, stale.lake_root)
    assert code == 1  # dbt fails the run on a source past error_after
    assert {name: r["status"] for name, r in results.items()} == wanted
    for name, result in results.items():
        assert abs(result["max_loaded_at_time_ago_in_s"] - ages[name]) < 900, result


def test_dashboard_shows_the_chosen_tickers_bars(platform, built):
    """On the marts just built: picking another ticker changes the candlestick's data."""
    import json

    from streamlit.testing.v1 import AppTest

    from lakehouse.settings import PROJECT_ROOT

    assert built.returncode == 0
    app = AppTest.from_file(str(PROJECT_ROOT / "dashboard" / "app.py"), default_timeout=60).run()
    assert not app.exception

    def candles() -> dict:
        figure = json.loads(app.get("plotly_chart")[0].proto.spec)
        return next(t for t in figure["data"] if t["type"] == "candlestick")

    ticker = app.sidebar.selectbox[0]
    first = candles()
    assert first["name"] == ticker.value and len(first["x"]) >= 3
    other = next(option for option in ticker.options if option != ticker.value)
    ticker.select(other).run()
    second = candles()
    assert second["name"] == other
    assert second["close"] != first["close"]


def test_dashboard_reads_quarantine_counts_from_the_marts_alone(platform, spark, lake, built):
    """The health page's quarantine table, on the dashboard's own read-only connection
    (no delta extension, no S3 keys), equals bronze's quarantine by reason."""
    from dashboard import queries

    assert built.returncode == 0
    with queries.marts(platform) as con:
        got = queries.quarantine_counts(con).set_index("reason")["records"].to_dict()
    want = table(spark, lake, "quarantine_market")["reason"].value_counts().to_dict()
    assert want and got == want


def test_health_page_reads_each_streams_lag_through_the_read_only_role(platform, lake):
    from dashboard.queries import stream_health

    health = stream_health(platform).set_index("query_id")
    bronze = health.loc[query_id(lake, "market_bronze")]
    enrichment = health.loc[query_id(lake, "trades_enrichment")]
    assert bronze["kafka_records_behind"] == 0  # `--once` read Kafka to its end
    assert pd.isna(enrichment["kafka_records_behind"])  # it reads bronze (Delta), not Kafka
    assert pd.notna(enrichment["event_time_lag"]) and pd.notna(enrichment["watermark"])
    assert enrichment["last_batch"] >= 1


BROWSER = Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()


# In CI a missing browser is a failure (.ci/run installs it); elsewhere a skip that says so.
@pytest.mark.skipif(
    not BROWSER and os.environ.get("CI") != "true",
    reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them)",
)
def test_a_real_browser_renders_the_candlestick(platform, built):
    """Headless Chromium opens the running dashboard; the chart is there, with data."""
    assert BROWSER, "chromium and chromium-driver are missing: apt-get install them"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as ChromeService
    from selenium.webdriver.support.ui import WebDriverWait

    assert built.returncode == 0
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={ARTIFACTS / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=ChromeService("/usr/bin/chromedriver"), options=options)
    try:
        browser.get(platform.dashboard_url)
        # Plotly keeps the figure's traces on its div; wait until a candlestick has points.
        points = WebDriverWait(browser, 90, poll_frequency=1).until(
            lambda b: b.execute_script(
                "const plot = document.querySelector('.js-plotly-plot');"
                "if (!plot || !plot.data) return 0;"
                "const candles = plot.data.find(t => t.type === 'candlestick');"
                "return candles ? candles.x.length : 0;"
            )
        )
        assert points >= 3
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    finally:
        browser.quit()


def fct_ohlcv_1m(platform) -> pd.DataFrame:
    with duckdb.connect(str(platform.duckdb_path), read_only=True) as con:
        # built_at says which build wrote a row: not part of the bar.
        return con.execute("SELECT * EXCLUDE (built_at) FROM fct_ohlcv_1m ORDER BY bar_id").df()


def test_incremental_bars_equal_a_full_rebuild(platform, spark, lake, built):
    """Trades a day later: the incremental build reads only recent trades (and each symbol's
    stored bars as context for the moving windows) and ends equal to a full rebuild."""
    assert built.returncode == 0
    before = fct_ohlcv_1m(platform)
    next_day = START_MS + 24 * 3600 * 1000 + 60_000
    produce(lake, count=1500, seed=12, start_ms=next_day, step_ms=45)
    send_sentinel(platform, lake, START_MS + 2 * 24 * 3600 * 1000)
    run_once(lake)

    # Before dbt runs, the dashboard's chart already has the new day from the live bars the
    # stream wrote: every trade of the symbol after the marts' newest minute.
    from dashboard import queries
    from dashboard.live import utc

    symbol = before["symbol"].iloc[0]
    chart, marts_as_of, live_as_of = queries.ticker_bars(
        platform, lake.serving_schema, symbol, "1 minute"
    )
    assert marts_as_of == before["bar_start"].max()
    newest = chart[chart["bar_start"] > marts_as_of]
    silver = table(spark, lake, "trades_enriched")
    times = utc(silver["event_time"])  # naive UTC from Spark; the marts' are UTC-aware
    after_marts = times >= marts_as_of + pd.Timedelta(minutes=1)
    new_trades = times[(silver["symbol"] == symbol) & after_marts]
    assert len(new_trades) > 0 and newest["trade_count"].sum() == len(new_trades)
    assert live_as_of == times.max()

    # A one-minute lookback: all but the newest stored bars are context, not recomputed.
    select = ["--select", "fct_ohlcv_1m", "--vars", "{lake_lookback: '1 minute'}"]
    incremental = run_dbt(platform, ["build", *select], lake_root=lake.lake_root, capture=True)
    assert incremental.returncode == 0, incremental.stdout[-4000:]
    assert "incremental model main.fct_ohlcv_1m" in incremental.stdout
    compiled = next(DBT_TARGET.glob("compiled/**/fct_ohlcv_1m.sql")).read_text()
    assert "event_time >= timestamp '" in compiled  # the trades read were bounded
    after_incremental = fct_ohlcv_1m(platform)

    full = ["build", "--select", "fct_ohlcv_1m", "--full-refresh"]
    rebuilt = run_dbt(platform, full, lake_root=lake.lake_root, capture=True)
    assert rebuilt.returncode == 0, rebuilt.stdout[-4000:]
    after_full = fct_ohlcv_1m(platform)

    assert len(after_full) > len(before)
    assert after_full["bar_start"].dt.date.nunique() == 2
    pd.testing.assert_frame_equal(after_incremental, after_full, check_exact=False, rtol=1e-9)
