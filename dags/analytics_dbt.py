"""`dbt build` over the lake whenever a pipeline's serving sync or lake maintenance updated
its data: data-aware scheduling on each pipeline's assets, no clock, no polling.

One DAG for all pipelines, one run at a time: the marts live in one DuckDB file, which
takes one writer. A run builds the models of the pipelines whose assets triggered it (their
declared dbt selector); a manual run builds everything.
"""

from __future__ import annotations

from airflow.sdk import Asset, dag, get_current_context, task

from lakehouse.orchestration import (
    DAG_DEFAULTS,
    dag_registry,
    lake_maintained_uri,
    serving_synced_uri,
)

# A pipeline's models are rebuilt after its lake maintenance and, if it has any, after the
# sync of its serving tables (the assets those DAGs' tasks produce).
ASSETS = [
    Asset(uri)
    for p in dag_registry().pipelines
    if p.dbt_select
    for uri in (
        *([serving_synced_uri(p.name)] if p.serving else []),
        *([lake_maintained_uri(p.name)] if p.tables else []),
    )
]


def _any_of(assets: list[Asset]):
    condition = assets[0]
    for asset in assets[1:]:
        condition = condition | asset
    return condition


@dag(
    dag_id="analytics_dbt",
    schedule=_any_of(ASSETS) if ASSETS else None,
    tags=["analytics", "dbt"],
    doc_md=__doc__,
    **DAG_DEFAULTS,
)
def analytics_dbt():
    @task
    def dbt_build() -> None:
        from lakehouse.analytics import build_marts
        from lakehouse.orchestration import pipeline_of_asset, task_settings
        from lakehouse.registry import load_registry

        settings = task_settings()
        registry = load_registry(settings)
        events = get_current_context().get("triggering_asset_events") or {}
        triggered = {pipeline_of_asset(getattr(asset, "uri", str(asset))) for asset in events}
        selectors = [
            p.dbt_select for p in registry.pipelines if p.dbt_select and p.name in triggered
        ]
        print(build_marts(settings, select=selectors or None)[-20000:])

    dbt_build()


analytics_dbt()
