"""The CSV drops page (Streamlit's AppTest) with the query functions replaced: with data,
before the first file, and without its tables. The queries themselves run on real Postgres
in tests/test_csv_pipeline.py."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import UTC, date, datetime

import pandas as pd
from streamlit.testing.v1 import AppTest

from dashboard import queries
from tests.test_orders_dashboard import APP, figures, page_env  # noqa: F401 (a fixture)

PAGE = "csv_page.py"


def totals(files_read: int = 12, files_rejected: int = 1) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "files_read": [files_read],
            "files_rejected": [files_rejected],
            "rows_loaded": [2_300],
            "rows_already_loaded": [150],
            "rows_refused": [42],
            "last_file_at": [datetime(2026, 12, 1, 12, 0, 5, tzinfo=UTC)],
        }
    )


def fake_queries(monkeypatch, **frames: pd.DataFrame) -> None:
    monkeypatch.setattr(queries, "serving", lambda settings: nullcontext(object()))
    # The default page (trends) lists the live feed's symbols from the same connection.
    monkeypatch.setattr(queries, "live_symbols", lambda conn, schema: [])
    defaults = {
        "csv_file_totals": totals(),
        "csv_refusals": pd.DataFrame({"reason": ["missing_value"], "rows": [42]}),
        "csv_recent_files": pd.DataFrame({"source_file": ["file:/in/a.csv"], "rows": [200]}),
        "purchases_per_day": pd.DataFrame(
            {
                "event_date": [date(2026, 12, 1)],
                "views": [100],
                "purchases": [7],
                "revenue": [123.5],
                "view_to_purchase_rate": [0.07],
            }
        ),
        "top_products": pd.DataFrame({"product_id": ["P0001"], "revenue": [123.5]}),
    }
    for name, frame in {**defaults, **frames}.items():
        monkeypatch.setattr(queries, name, lambda *args, frame=frame: frame)


def open_page() -> AppTest:
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception
    return app.switch_page(PAGE).run()


def test_the_page_shows_files_rows_refusals_and_the_views(page_env, monkeypatch):  # noqa: F811
    fake_queries(monkeypatch)
    app = open_page()
    assert not app.exception and not app.info
    assert app.title[0].value == "CSV drops"
    assert {m.label: m.value for m in app.metric} == {
        "Files read": "12",
        "Files rejected": "1",
        "Rows loaded": "2,300",
        "Rows already loaded": "150",
        "Rows refused": "42",
        "Files waiting": "0",  # the page's home is an empty tmp folder
    }
    assert set(figures(app)) == {"Revenue", "View-to-purchase rate"}


def test_before_the_first_file_the_page_says_how_to_drop_one(page_env, monkeypatch):  # noqa: F811
    fake_queries(monkeypatch, csv_file_totals=totals(0, 0))
    app = open_page()
    assert not app.exception
    assert app.info[0].value == queries.CSV_EMPTY


def test_missing_tables_say_what_to_run(page_env, monkeypatch):  # noqa: F811
    fake_queries(monkeypatch)

    def missing(*args):
        raise queries.NoData(queries.CSV_TABLES_MISSING)

    monkeypatch.setattr(queries, "csv_file_totals", missing)
    app = open_page()
    assert not app.exception
    assert app.info[0].value == queries.CSV_TABLES_MISSING
