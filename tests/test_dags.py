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
    from lakehouse.orchestration import lake_maintained_uri, serving_synced_uri
    from lakehouse.registry import load_registry

    consumed = {a.uri for a in dagbag.dags["analytics_dbt"].timetable.asset_condition.objects}
    produced = {
        outlet.uri
        for dag_id in ("postgres_sync", "lake_maintenance")
        for task in dagbag.dags[dag_id].tasks
        for outlet in task.outlets
    }
    modelled = {
        uri
        for p in load_registry().pipelines
        if p.dbt_select
        for uri in (serving_synced_uri(p.name), lake_maintained_uri(p.name))
    } & produced
    # The market's sync and maintenance, the activity's maintenance (it has no serving
    # sync); the orders pipeline has no dbt models, so its maintenance triggers no build.
    assert consumed == modelled and len(consumed) == 3
    assert produced - consumed, "a pipeline without models should produce an unconsumed asset"


def test_supervision_dags_cover_every_registered_stream(dagbag):
    from lakehouse.registry import load_registry

    jobs = set(load_registry().jobs)
    control = dagbag.dags["stream_control"]
    assert set(control.params.get_param("job").schema["enum"]) == jobs
    assert dagbag.dags["stream_supervisor"].max_active_runs == 1


def test_a_registry_with_another_pipeline_gets_its_tasks_without_dag_changes(monkeypatch):
    """The DAGs expand over whatever registry the settings name (the test's kit pipeline)."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("LAKEHOUSE_REGISTRY", "tests.kit_pipeline:REGISTRY")
    dags = DagBag(dag_folder=str(PROJECT_ROOT / "dags")).dags
    assert set(dags["stream_control"].params.get_param("job").schema["enum"]) == {
        "market_pipeline",
        "pings_job",
    }
    supervise = dags["stream_supervisor"].get_task("supervise")
    mapped = supervise.op_kwargs_expand_input.value["job_name"]
    assert sorted(mapped) == ["market_pipeline", "pings_job"]
    maintenance = {t.task_id for t in dags["lake_maintenance"].tasks}
    assert maintenance == {"maintain_market_pipeline", "maintain_pings_job"}
    sync = {t.task_id: {o.uri for o in t.outlets} for t in dags["postgres_sync"].tasks}
    assert sync == {
        "sync_market": {"lakehouse://serving/market"},
        "sync_pings": {"lakehouse://serving/pings"},
    }
    # pings declares no dbt models: dbt does not wait for its assets.
    consumed = {a.uri for a in dags["analytics_dbt"].timetable.asset_condition.objects}
    assert consumed == {"lakehouse://serving/market", "lakehouse://lake/market/maintained"}


def test_a_bad_namespace_is_refused_by_the_dag_params(dagbag):
    import jsonschema

    schema = dagbag.dags["stream_supervisor"].params.get_param("namespace").schema
    jsonschema.validate("t0a1_b", schema)
    for bad in ("x; DROP TABLE stream_drivers", "Upper", "-x"):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
