"""The spark-submit command line the Airflow provider's hook builds for our applications."""

from lakehouse import spark_submit
from lakehouse.settings import Settings


def test_command_runs_the_module_with_the_platform_conf_but_no_s3_keys(tmp_path, monkeypatch):
    from infra.airflow import AirflowService

    settings = Settings(
        home=tmp_path, s3_access_key="visible-key-id", s3_secret_key="never-in-ps-secret"
    )
    # The hook reads the spark_default connection from the Airflow service's environment.
    monkeypatch.setattr("os.environ", AirflowService(settings).environment())
    command = spark_submit.command(settings, "spark.jobs.market.replay", "replay", ["--from", "x"])
    line = " ".join(command)
    assert "never-in-ps-secret" not in line and "visible-key-id" not in line
    assert "fs.s3a.secret.key" not in line
    assert command[-3:] == [spark_submit.application("spark.jobs.market.replay"), "--from", "x"]
    assert "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension" in line
    assert f"--master {settings.spark_master}" in line
