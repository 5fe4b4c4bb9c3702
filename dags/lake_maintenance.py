"""Daily OPTIMIZE of closed date partitions and VACUUM of every streaming table, one task
per registered streaming job.

Single-writer rule (docs/architecture.md): the work runs inside the streaming driver that
owns each table, between its micro-batch commits, never beside it. This DAG files the
requests in Postgres and waits for the driver's answers (lakehouse/maintenance.py).
OPTIMIZE only touches date partitions closed for writes and skips those already compacted;
VACUUM keeps `retention_hours` (7 days by default); a retention below a table's own needs
`allow_short_retention`, and no VACUUM deletes files a streaming reader of the table has not
read yet: it waits up to `reader_wait_s` for them, then fails naming the reader. Each task
updates the maintained-lake asset of the pipelines its job hosts.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Asset, Param, dag, get_current_context, task

from lakehouse.orchestration import (
    DAG_DEFAULTS,
    dag_registry,
    filter_param,
    lake_maintained_uri,
    namespace_param,
)

REGISTRY = dag_registry()


@dag(
    dag_id="lake_maintenance",
    schedule="@daily",
    tags=["lake", "maintenance"],
    doc_md=__doc__,
    **DAG_DEFAULTS,
    params={
        "namespace": namespace_param(),
        "jobs": filter_param("jobs"),
        "retention_hours": Param(168, type="number", minimum=0),
        "allow_short_retention": Param(
            False, type="boolean", description="let retention_hours go below a table's own"
        ),
        "reader_wait_s": Param(300, type="number", minimum=0),
        "closed_after_hours": Param(1, type="number", minimum=0),
        "timeout_s": Param(3600, type="number", minimum=1),
        "tables": Param([], type="array", description="only these tables ([] = all)"),
    },
)
def lake_maintenance():
    for job in REGISTRY.jobs.values():
        outlets = [Asset(lake_maintained_uri(p.name)) for p in job.pipelines]

        @task(task_id=f"maintain_{job.name}", outlets=outlets, execution_timeout=timedelta(hours=2))
        def maintain(job_name: str = job.name) -> list[dict]:
            from lakehouse import maintenance
            from lakehouse.orchestration import skip_unless_chosen, task_settings
            from lakehouse.registry import load_registry

            params = get_current_context()["params"]
            skip_unless_chosen(job_name, params["jobs"])
            settings = task_settings()
            registry = load_registry(settings)
            unknown = set(params["tables"]) - set(registry.tables)
            if unknown:
                raise ValueError(f"no table {', '.join(sorted(unknown))} is registered")
            return maintenance.maintain_job(
                settings,
                registry.job(job_name),
                params["namespace"],
                retention_hours=float(params["retention_hours"]),
                closed_after_hours=float(params["closed_after_hours"]),
                timeout_s=float(params["timeout_s"]),
                tables=list(params["tables"]),
                allow_short_retention=bool(params["allow_short_retention"]),
                reader_wait_s=float(params["reader_wait_s"]),
            )

        maintain()


lake_maintenance()
