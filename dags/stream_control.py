"""Start, stop or restart a streaming job from the UI (Trigger DAG w/ config).

`stop` records the wish in Postgres (the supervisor then leaves the job alone) and stops
the driver gracefully: SIGTERM, the queries stop between micro-batches, SIGKILL only if it
hangs. `start` records the wish, forgets earlier failed restarts and starts the driver if
it is not running. `restart` is stop then start.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task

from lakehouse.orchestration import DAG_DEFAULTS, dag_registry, namespace_param

JOBS = sorted(dag_registry().jobs)


@dag(
    dag_id="stream_control",
    schedule=None,
    tags=["streaming", "control"],
    doc_md=__doc__,
    **DAG_DEFAULTS,
    params={
        "job": Param(JOBS[0], type="string", enum=JOBS),
        "action": Param("start", type="string", enum=["start", "stop", "restart"]),
        "namespace": namespace_param(),
    },
)
def stream_control():
    @task
    def control() -> str:
        from lakehouse import supervision
        from lakehouse.orchestration import task_settings
        from lakehouse.registry import load_registry

        params = get_current_context()["params"]
        settings = task_settings()
        job = load_registry(settings).job(params["job"])
        return supervision.control(settings, job, params["namespace"], params["action"])

    control()


stream_control()
