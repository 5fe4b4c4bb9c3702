"""What the Airflow DAGs share: default arguments, the parameters every DAG takes, and the
assets that chain them.

DAG files stay thin: at parse time they import only this module and the registry, and
expand over the registered pipelines and jobs; the work is in lakehouse.supervision,
lakehouse.maintenance, lakehouse.serving_sync and lakehouse.analytics, imported inside tasks.
"""

from __future__ import annotations

from datetime import datetime, timedelta

DEFAULT_ARGS = {"owner": "platform", "retries": 2, "retry_delay": timedelta(seconds=30)}
START_DATE = datetime(2026, 1, 1)
# Every DAG: no backfill of missed intervals, one run at a time.
DAG_DEFAULTS = {
    "start_date": START_DATE,
    "catchup": False,
    "max_active_runs": 1,
    "default_args": DEFAULT_ARGS,
}
NAMESPACE_PATTERN = "^([a-z0-9][a-z0-9_]{0,39})?$"  # lakehouse.layout checks it again


def serving_synced_uri(pipeline: str) -> str:
    """Updated when the sync wrote new rows of the pipeline's serving tables."""
    return f"lakehouse://serving/{pipeline}"


def lake_maintained_uri(pipeline: str) -> str:
    """Updated when OPTIMIZE/VACUUM of the pipeline's tables finished."""
    return f"lakehouse://lake/{pipeline}/maintained"


def pipeline_of_asset(uri: str) -> str | None:
    for prefix in ("lakehouse://serving/", "lakehouse://lake/"):
        if uri.startswith(prefix):
            return uri.removeprefix(prefix).split("/")[0]
    return None


def namespace_param():
    from airflow.sdk import Param

    return Param(
        "",
        type="string",
        pattern=NAMESPACE_PATTERN,
        description="an isolated run's namespace (tests); '' = the platform's own",
    )


def filter_param(what: str):
    from airflow.sdk import Param

    return Param([], type="array", description=f"only these {what} ([] = all)")


def skip_unless_chosen(name: str, chosen: list[str]) -> None:
    """Skip this task when a filter is set and does not name it (e.g. a test's own job)."""
    if chosen and name not in chosen:
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(f"{name} is not among {chosen}")


def dag_registry():
    """The registry the platform's settings name (LAKEHOUSE_REGISTRY), read at parse time."""
    from lakehouse.registry import load_registry

    return load_registry(task_settings())


def task_settings():
    """The platform's settings inside a task (the Airflow service exports LAKEHOUSE_*)."""
    from lakehouse.settings import load_settings

    return load_settings()
