"""Rebuild a silver table from bronze for event times from a given time (seed 003's replay).

Trigger it with config: `table` and `from_time` (ISO-8601, UTC when no offset is given).
The owning stream is stopped for the replay and started again afterwards if it was meant
to run; the replay covers what that stream had finished (up to its last watermark) and
replaces the range in one Delta commit, so replaying twice gives the same rows. The
serving tables then follow through the Postgres sync, and the dbt marts through a full
refresh (the incremental one-minute bars only re-read recent trades otherwise).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, get_current_context, task

from lakehouse.orchestration import DAG_DEFAULTS
from lakehouse.registry import REPLAYABLE_TABLES


@dag(
    dag_id="replay",
    schedule=None,
    tags=["lake", "replay"],
    doc_md=__doc__,
    **DAG_DEFAULTS,
    params={
        "table": Param(REPLAYABLE_TABLES[0], type="string", enum=list(REPLAYABLE_TABLES)),
        "from_time": Param(
            "2026-01-01T00:00:00Z", type="string", description="first event time to rebuild"
        ),
        "namespace": Param("", type="string", description="isolated run (tests); '' = live"),
    },
)
def replay():
    @task(execution_timeout=timedelta(hours=2))
    def rebuild() -> dict:
        from lakehouse import replay as lake_replay
        from lakehouse.orchestration import task_settings

        params = get_current_context()["params"]
        return lake_replay.replay(
            task_settings(), params["table"], params["from_time"], params["namespace"]
        )

    @task(execution_timeout=timedelta(minutes=30))
    def sync_serving() -> dict:
        from lakehouse import serving_sync

        return serving_sync.run(get_current_context()["params"]["namespace"])

    @task(execution_timeout=timedelta(minutes=30))
    def refresh_marts() -> None:
        from lakehouse.analytics import build_marts
        from lakehouse.orchestration import task_settings
        from spark.jobs.market_layout import MarketLayout

        settings, namespace = task_settings(), get_current_context()["params"]["namespace"]
        lake_root = MarketLayout.isolated(settings, namespace).lake_root if namespace else None
        # Incremental marts only re-read recent trades: rebuild them from the whole lake.
        print(build_marts(settings, full_refresh=True, lake_root=lake_root)[-20000:])

    rebuild() >> sync_serving() >> refresh_marts()


replay()
