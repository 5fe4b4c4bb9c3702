"""What the Airflow DAGs share: default arguments and the assets that chain them.

DAG files stay thin and import only this and the registry at parse time; the work is in
lakehouse.supervision, lakehouse.maintenance and the Spark jobs, imported inside tasks.
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

# Data-aware scheduling: dbt runs when either of these is updated.
SERVING_SYNCED_URI = "lakehouse://serving/trades_enriched"
LAKE_COMPACTED_URI = "lakehouse://lake/silver/trades_enriched/maintained"


def task_settings():
    """The platform's settings inside a task (the Airflow service exports LAKEHOUSE_*)."""
    from lakehouse.settings import load_settings

    return load_settings()
