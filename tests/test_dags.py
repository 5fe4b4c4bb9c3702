"""Airflow's own DagBag loads dags/ without errors, and every DAG follows the house rules."""

import pytest

from lakehouse.settings import PROJECT_ROOT


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(PROJECT_ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert dagbag.dags, "dags/ holds no DAG"


def test_every_dag_has_tags_retries_owner_and_docs(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md, f"{dag_id} has no doc_md"
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"
            assert task.owner and task.owner != "airflow", f"{dag_id}.{task.task_id} has no owner"


def test_dbt_runs_after_the_sync_or_the_maintenance_through_assets(dagbag):
    consumed = {a.uri for a in dagbag.dags["analytics_dbt"].timetable.asset_condition.objects}
    produced = {
        outlet.uri
        for dag_id in ("postgres_sync", "lake_maintenance")
        for task in dagbag.dags[dag_id].tasks
        for outlet in task.outlets
    }
    assert consumed == produced and len(consumed) == 2


def test_supervision_dags_cover_every_registered_stream(dagbag):
    from lakehouse.registry import STREAM_JOBS

    control = dagbag.dags["stream_control"]
    assert set(control.params.get_param("job").schema["enum"]) == set(STREAM_JOBS)
    assert dagbag.dags["stream_supervisor"].max_active_runs == 1
