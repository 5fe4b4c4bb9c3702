"""dbt runs on one DuckDB file wait for each other instead of failing on its write lock."""

from __future__ import annotations

import threading

from lakehouse.analytics import one_dbt_at_a_time
from lakehouse.settings import load_settings


def test_a_second_dbt_run_waits_for_the_first(tmp_path):
    settings = load_settings().model_copy(update={"home": tmp_path})
    events: list[str] = []

    def second() -> None:
        with one_dbt_at_a_time(settings):
            events.append("second started")

    with one_dbt_at_a_time(settings):
        waiting = threading.Thread(target=second)
        waiting.start()
        waiting.join(timeout=1.0)
        assert waiting.is_alive() and events == []  # blocked on the lock, not failed
        events.append("first finished")
    waiting.join(timeout=10)
    assert events == ["first finished", "second started"]
