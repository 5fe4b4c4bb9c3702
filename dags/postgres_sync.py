"""Every 5 minutes: new rows of each pipeline's Delta tables into its Postgres serving
tables, exactly once (one task per pipeline that declares serving tables).

Runs lakehouse/serving_sync.py (delta-rs and psycopg, no JVM). It reads the Delta versions
added since the last sync (change data feed: OPTIMIZE commits carry no rows), and per
version range, in one Postgres transaction, COPYs the new rows in (or merges a range that
deleted or changed rows), runs the table's after-load step (the market's one-minute bars)
and stores the synced version. Re-running changes nothing. A task that found nothing new is
skipped, so it does not update its pipeline's asset and dbt does not rebuild for nothing.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Asset, Param, dag, get_current_context, task

from lakehouse.orchestration import (
    DAG_DEFAULTS,
    dag_registry,
    filter_param,
    namespace_param,
    serving_synced_uri,
)

PIPELINES = sorted({p.name for p, _ in dag_registry().serving})


@dag(
    dag_id="postgres_sync",
    schedule=timedelta(minutes=5),
    tags=["serving", "postgres"],
    doc_md=__doc__,
    **DAG_DEFAULTS,
    params={
        "namespace": namespace_param(),
        "pipelines": filter_param("pipelines"),
        "max_versions": Param(100, type="integer", minimum=1),
    },
)
def postgres_sync():
    for name in PIPELINES:

        @task(
            task_id=f"sync_{name}",
            outlets=[Asset(serving_synced_uri(name))],
            execution_timeout=timedelta(minutes=30),
        )
        def sync(pipeline: str = name) -> dict:
            from airflow.sdk.exceptions import AirflowSkipException

            from lakehouse import serving_sync
            from lakehouse.orchestration import skip_unless_chosen

            params = get_current_context()["params"]
            skip_unless_chosen(pipeline, params["pipelines"])
            report = serving_sync.run(pipeline, params["namespace"], params["max_versions"])
            if not (report["rows_inserted"] or report["rows_deleted"]):
                # Skipped: no asset event, so dbt does not rebuild for nothing.
                raise AirflowSkipException(f"nothing new to sync: {report}")
            return report

        sync()


postgres_sync()
