"""`dbt build` over the lake whenever the serving sync or the lake maintenance updated it.

Data-aware scheduling on Airflow Assets: no clock, no polling; the marts (OHLCV, sectors,
top movers) the dashboard reads are rebuilt after new data or a compaction.
"""

from __future__ import annotations

from airflow.sdk import Asset, dag, task

from lakehouse.orchestration import DAG_DEFAULTS, LAKE_COMPACTED_URI, SERVING_SYNCED_URI


@dag(
    dag_id="analytics_dbt",
    schedule=(Asset(SERVING_SYNCED_URI) | Asset(LAKE_COMPACTED_URI)),
    tags=["analytics", "dbt"],
    doc_md=__doc__,
    **DAG_DEFAULTS,
)
def analytics_dbt():
    @task
    def dbt_build() -> None:
        from lakehouse.analytics import build_marts
        from lakehouse.orchestration import task_settings

        print(build_marts(task_settings())[-20000:])

    dbt_build()


analytics_dbt()
