"""The registry's jobs: a driver per pipeline as declared, or every pipeline in one driver."""

from __future__ import annotations

import pytest

from lakehouse.registry import ONE_DRIVER_JOB, RegistryError, load_registry
from lakehouse.settings import Settings


def test_each_pipeline_runs_in_the_driver_its_declaration_names():
    registry = load_registry(Settings())
    assert {p.name: p.job for p in registry.pipelines} == {
        "market": "market_pipeline",
        "activity": "activity_pipeline",
        "orders": "orders_pipeline",
        "csv": "csv_pipeline",
    }
    assert all(len(job.pipelines) == 1 for job in registry.jobs.values())


def test_one_driver_hosts_every_pipeline_and_every_query():
    declared = load_registry(Settings())
    registry = load_registry(Settings(streams_in_one_driver=True))
    assert list(registry.jobs) == [ONE_DRIVER_JOB]
    job = registry.job(ONE_DRIVER_JOB)
    assert [p.name for p in job.pipelines] == declared.names
    assert set(job.queries) == {q for j in declared.jobs.values() for q in j.queries}
    # maintenance goes to the driver that writes the table: now the one driver
    assert {registry.owner(t)[1].name for t in declared.tables} == {ONE_DRIVER_JOB}
    with pytest.raises(RegistryError, match="no streaming job 'market_pipeline'"):
        registry.job("market_pipeline")


def test_a_launched_driver_loads_the_registry_its_launcher_chose(monkeypatch):
    from lakehouse.supervision import driver_environment

    monkeypatch.delenv("LAKEHOUSE_STREAMS_IN_ONE_DRIVER", raising=False)
    launcher = Settings(streams_in_one_driver=True)  # e.g. a copy made by a test or the CLI
    for name, value in driver_environment(launcher).items():
        monkeypatch.setenv(name, value)
    assert load_registry(Settings()).job(ONE_DRIVER_JOB).name == ONE_DRIVER_JOB
