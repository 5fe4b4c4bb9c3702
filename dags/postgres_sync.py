"""Every 5 minutes: new silver trades into the Postgres serving tables, exactly once.

Runs lakehouse/serving_sync.py (delta-rs and psycopg, no JVM). It reads the Delta versions
added since the last sync (change data feed: OPTIMIZE commits carry no rows), and per
version range, in one Postgres transaction, COPYs the new trades in (or merges a range
that deleted or changed rows), updates the touched one-minute bars and stores the synced
version. Re-running changes nothing. A run that found nothing new is marked skipped, so it
does not trigger `analytics_dbt`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Asset, Param, dag, get_current_context, task

from lakehouse.orchestration import DAG_DEFAULTS, SERVING_SYNCED_URI


@dag(
    dag_id="postgres_sync",
    schedule=timedelta(minutes=5),
    tags=["serving", "postgres"],
    doc_md=__doc__,
    **DAG_DEFAULTS,
    params={
        "namespace": Param("", type="string", description="isolated run (tests); '' = live"),
        "max_versions": Param(100, type="integer", minimum=1),
    },
)
def postgres_sync():
    @task(outlets=[Asset(SERVING_SYNCED_URI)], execution_timeout=timedelta(minutes=30))
    def sync() -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from lakehouse import serving_sync

        params = get_current_context()["params"]
        report = serving_sync.run(params["namespace"], params["max_versions"])
        if not (report["rows_inserted"] or report["rows_deleted"]):
            # Skipped: no Asset event, so dbt does not rebuild for nothing.
            raise AirflowSkipException(f"nothing new to sync: {report}")
        return report

    sync()


postgres_sync()
