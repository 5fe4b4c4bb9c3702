"""Rebuild a replayable table from its inputs for event times from a given time (e.g. the
market's silver trades from bronze).

Trigger it with config: `table` and `from_time` (ISO-8601, UTC when no offset is given).
The owning stream is stopped for the replay and started again afterwards if it was meant
to run; the replay covers what that stream had finished (up to its last watermark) and
replaces the range in one Delta commit, so replaying twice gives the same rows. The
serving tables then follow through the Postgres sync, and the owning pipeline's dbt models
through a full refresh (incremental models only re-read recent rows otherwise).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, get_current_context, task

from lakehouse.orchestration import DAG_DEFAULTS, dag_registry, namespace_param

REPLAYABLE = list(dag_registry().replayable)


@dag(
    dag_id="replay",
    schedule=None,
    tags=["lake", "replay"],
    doc_md=__doc__,
    **DAG_DEFAULTS,
    params={
        "table": Param(REPLAYABLE[0] if REPLAYABLE else "", type="string", enum=REPLAYABLE),
        "from_time": Param(
            "2026-01-01T00:00:00Z", type="string", description="first event time to rebuild"
        ),
        "namespace": namespace_param(),
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
        from lakehouse.orchestration import task_settings
        from lakehouse.registry import load_registry

        params = get_current_context()["params"]
        pipeline, _ = load_registry(task_settings()).owner(params["table"])
        return serving_sync.run(pipeline.name, params["namespace"])

    @task(execution_timeout=timedelta(minutes=30))
    def refresh_marts() -> None:
        from lakehouse.analytics import build_marts
        from lakehouse.layout import Layout
        from lakehouse.orchestration import task_settings

        settings, params = task_settings(), get_current_context()["params"]
        layout = Layout(settings, params["namespace"])
        pipeline, _ = layout.registry.owner(params["table"])
        if pipeline.dbt_select:
            print(
                build_marts(
                    settings,
                    full_refresh=True,
                    lake_root=layout.lake_root,
                    select=[pipeline.dbt_select],
                )[-20000:]
            )

    rebuild() >> sync_serving() >> refresh_marts()


replay()
