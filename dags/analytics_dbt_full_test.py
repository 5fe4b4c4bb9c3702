"""Every dbt test of each pipeline's models over the whole lake, once a day.

The builds `analytics_dbt` runs test only what they read and wrote (the new trades, the
rows they rebuilt), so their cost does not grow with the lake. This run covers the rest:
a duplicate across a build's bound, a row changed behind its lookback.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, get_current_context, task

from lakehouse.orchestration import DAG_DEFAULTS, dag_registry, filter_param, namespace_param

SELECTORS = {p.name: p.dbt_select for p in dag_registry().pipelines if p.dbt_select}


@dag(
    dag_id="analytics_dbt_full_test",
    schedule="@daily",
    tags=["analytics", "dbt"],
    doc_md=__doc__,
    params={"namespace": namespace_param(), "pipelines": filter_param("pipelines")},
    **DAG_DEFAULTS,
)
def analytics_dbt_full_test():
    # One at a time: the marts live in one DuckDB file, which takes one writer.
    previous = None
    for name, selector in sorted(SELECTORS.items()):
        # all_done: a pipeline's failed or skipped tests do not skip the next pipeline's.
        @task(task_id=f"test_{name}", execution_timeout=timedelta(hours=2), trigger_rule="all_done")
        def dbt_test(pipeline: str = name, select: str = selector) -> None:
            from airflow.sdk.exceptions import AirflowSkipException

            from lakehouse.analytics import check_whole_lake, models_built
            from lakehouse.layout import Layout
            from lakehouse.orchestration import skip_unless_chosen, task_settings

            params = get_current_context()["params"]
            skip_unless_chosen(pipeline, params["pipelines"])
            settings = task_settings()
            # A new platform runs this DAG at once, before the first build. Some of the
            # models missing while others exist is a fault: dbt test reports it.
            if not any(models_built(settings, select).values()):
                raise AirflowSkipException(
                    f"none of the models of {select} is built yet (analytics_dbt builds them "
                    "after the first sync): nothing to test"
                )
            lake_root = Layout(settings, params["namespace"]).lake_root
            print(check_whole_lake(settings, select, lake_root=lake_root)[-20000:])

        current = dbt_test()
        if previous is not None:
            previous >> current
        previous = current


analytics_dbt_full_test()
