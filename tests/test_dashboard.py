"""The dashboard without data: a helpful message, never a traceback."""

from streamlit.testing.v1 import AppTest

from lakehouse.settings import PROJECT_ROOT

APP = str(PROJECT_ROOT / "dashboard" / "app.py")


def test_empty_lake_shows_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path))
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception
    assert any("lakehouse dbt build" in info.value for info in app.info)
    assert not app.get("plotly_chart")
