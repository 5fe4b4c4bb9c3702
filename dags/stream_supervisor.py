"""Keeps every registered streaming job running (one mapped task per job).

Each minute, per job: start it if it is not running, restart it if its queries stopped
reporting progress (stalled), back off exponentially between restarts, and fail this task
after `max_restarts` starts that did not last. A driver is alive when it holds its advisory
lock in Postgres, so a driver started by an earlier task is recognised and never started
twice. `jobs` limits a run to some jobs (tests run only their own). Start and stop a job by
hand with the `stream_control` DAG.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, get_current_context, task

from lakehouse.orchestration import (
    DAG_DEFAULTS,
    DEFAULT_ARGS,
    dag_registry,
    filter_param,
    namespace_param,
)

JOBS = sorted(dag_registry().jobs)


@dag(
    dag_id="stream_supervisor",
    schedule=timedelta(minutes=1),
    **{
        **DAG_DEFAULTS,
        "default_args": {**DEFAULT_ARGS, "retries": 1, "retry_delay": timedelta(seconds=10)},
    },
    tags=["streaming", "supervision"],
    doc_md=__doc__,
    params={
        "namespace": namespace_param(),
        "jobs": filter_param("jobs"),
        "stall_after_s": Param(300, type="number", description="silence before a restart"),
        "backoff_base_s": Param(30, type="number", description="first restart backoff"),
        "max_restarts": Param(5, type="integer", description="starts before giving up"),
    },
)
def stream_supervisor():
    @task(execution_timeout=timedelta(minutes=10))
    def supervise(job_name: str) -> dict:
        from lakehouse import supervision
        from lakehouse.orchestration import skip_unless_chosen, task_settings
        from lakehouse.registry import load_registry

        params = get_current_context()["params"]
        skip_unless_chosen(job_name, params["jobs"])
        settings = task_settings()
        policy = supervision.Policy(
            stall_after_s=float(params["stall_after_s"]),
            backoff_base_s=float(params["backoff_base_s"]),
            max_restarts=int(params["max_restarts"]),
        )
        job = load_registry(settings).job(job_name)
        decision = supervision.supervise(settings, job, params["namespace"], policy)
        return {"job": job_name, "action": str(decision.action), "reason": decision.reason}

    supervise.expand(job_name=JOBS)


stream_supervisor()
