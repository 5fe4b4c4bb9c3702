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


def test_submitted_drivers_bind_their_ui_to_the_platform_host(tmp_path, monkeypatch):
    """Under spark-submit the JVM starts before the session factory can set SPARK_LOCAL_IP,
    and without it the driver's UI listens on every interface."""
    from infra.airflow import AirflowService
    from lakehouse.supervision import driver_environment

    settings = Settings(home=tmp_path, bind_host="127.0.0.1")
    environment = AirflowService(settings).environment()
    environment.pop("SPARK_LOCAL_IP", None)
    monkeypatch.setattr("os.environ", environment)
    # The supervisor's detached drivers.
    assert driver_environment(settings)["SPARK_LOCAL_IP"] == "127.0.0.1"
    # Batch applications the hook runs (replay, maintenance): it adds these on Popen.
    hook = spark_submit.submit_hook(settings, "replay", [])
    hook._build_spark_submit_command(spark_submit.application("spark.jobs.market.replay"))
    assert hook._env == {"SPARK_LOCAL_IP": "127.0.0.1"}
