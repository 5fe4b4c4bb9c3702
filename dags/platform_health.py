"""Checks every 5 minutes that Kafka, S3, Postgres and MongoDB answer; a failed run shows
which not."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

from lakehouse.orchestration import DAG_DEFAULTS


@dag(
    dag_id="platform_health",
    schedule=timedelta(minutes=5),
    tags=["platform", "health"],
    doc_md=__doc__,
    **DAG_DEFAULTS,
)
def platform_health():
    @task
    def check() -> dict[str, bool]:
        from infra.health import check_services
        from lakehouse.orchestration import task_settings

        results = check_services(task_settings())
        down = [name for name, ok in results.items() if not ok]
        if down:
            raise RuntimeError(f"services not answering: {', '.join(down)}")
        return results

    check()


platform_health()
