"""lakehouse.analytics beyond the build: which models the marts' DuckDB file holds."""

import duckdb

from lakehouse.analytics import models_built
from lakehouse.settings import Settings


def test_the_daily_full_test_knows_which_models_are_built(tmp_path):
    """A new platform runs the daily full test before its first build: the DAG skips when
    none of a pipeline's models is built yet (dbt would fail on every missing table)."""
    settings = Settings(home=tmp_path)
    built = models_built(settings, "tag:market")
    assert {"stg_trades", "fct_ohlcv_1m", "dim_symbol"} <= set(built)
    assert not any(built.values())  # no DuckDB file at all
    with duckdb.connect(str(settings.duckdb_path)) as con:
        con.execute("CREATE TABLE stg_trades (trade_id VARCHAR)")
    built = models_built(settings, "tag:market")
    assert built["stg_trades"] and not built["fct_ohlcv_1m"]
