"""Checks every 5 minutes that Kafka, S3 and Postgres answer; a failed run shows which not."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task

DEFAULT_ARGS = {"owner": "platform", "retries": 2, "retry_delay": timedelta(seconds=30)}


@dag(
    dag_id="platform_health",
    schedule=timedelta(minutes=5),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["platform", "health"],
    doc_md=__doc__,
)
def platform_health():
    @task
    def check() -> dict[str, bool]:
        from lakehouse.health import check_services
        from lakehouse.settings import load_settings

        results = check_services(load_settings())
        down = [name for name, ok in results.items() if not ok]
        if down:
            raise RuntimeError(f"services not answering: {', '.join(down)}")
        return results

    check()


platform_health()
