"""The embedded Airflow's command line (pure: nothing is started)."""

from infra.airflow import AirflowService
from lakehouse.settings import Settings


def test_the_triggerer_runs_only_when_asked(tmp_path):
    """No DAG of the platform defers, so the triggerer and its 0.3 GiB stay off."""
    script = AirflowService(Settings(home=tmp_path)).command()[-1]
    for component in ("api-server", "scheduler --skip-serve-logs", "dag-processor"):
        assert f"airflow {component};" in script
    assert "triggerer" not in script
    asked = AirflowService(Settings(home=tmp_path, airflow_triggerer=True)).command()[-1]
    assert "airflow triggerer --skip-serve-logs;" in asked
