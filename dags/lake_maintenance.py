"""Daily OPTIMIZE of closed date partitions and VACUUM of every streaming table.

Single-writer rule (ARCHITECTURE.md §3): the work runs inside the streaming driver that
owns each table, between its micro-batch commits, never beside it. This DAG files the
requests in Postgres and waits for the driver's answers (lakehouse/maintenance.py).
OPTIMIZE only touches date partitions closed for writes and skips those already compacted;
VACUUM keeps `retention_hours` (7 days by default) with Delta's retention check on.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Asset, Param, dag, get_current_context, task

from lakehouse.orchestration import DAG_DEFAULTS, LAKE_COMPACTED_URI
from lakehouse.registry import STREAM_JOBS


@dag(
    dag_id="lake_maintenance",
    schedule="@daily",
    tags=["lake", "maintenance"],
    doc_md=__doc__,
    **DAG_DEFAULTS,
    params={
        "namespace": Param("", type="string", description="isolated run (tests); '' = live"),
        "retention_hours": Param(168, type="number", minimum=0),
        "closed_after_hours": Param(1, type="number", minimum=0),
        "timeout_s": Param(3600, type="number", minimum=1),
        "tables": Param([], type="array", description="only these tables ([] = all)"),
    },
)
def lake_maintenance():
    @task(outlets=[Asset(LAKE_COMPACTED_URI)], execution_timeout=timedelta(hours=2))
    def maintain(job_name: str) -> list[dict]:
        from lakehouse import maintenance
        from lakehouse.orchestration import task_settings

        params = get_current_context()["params"]
        return maintenance.maintain_job(
            task_settings(),
            STREAM_JOBS[job_name],
            params["namespace"],
            retention_hours=float(params["retention_hours"]),
            closed_after_hours=float(params["closed_after_hours"]),
            timeout_s=float(params["timeout_s"]),
            tables=list(params["tables"]),
        )

    maintain.expand(job_name=sorted(STREAM_JOBS))


lake_maintenance()
