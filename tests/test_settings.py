import stat

from lakehouse.settings import Settings, ensure_credentials, load_settings
from spark.session import spark_conf


def test_credentials_are_generated_once_with_private_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path))
    for name in ("S3_ACCESS_KEY", "S3_SECRET_KEY", "POSTGRES_PASSWORD"):
        monkeypatch.delenv(f"LAKEHOUSE_{name}", raising=False)
    settings, generated = ensure_credentials(load_settings())
    assert set(generated) == {
        "s3_access_key",
        "s3_secret_key",
        "postgres_password",
        "dashboard_password",
        "airflow_admin_password",
    }
    assert stat.S_IMODE(settings.credentials_path.stat().st_mode) == 0o600
    assert settings.s3_secret_key == generated["s3_secret_key"]

    again, generated_again = ensure_credentials(load_settings())
    assert generated_again == {}
    assert again.s3_secret_key == settings.s3_secret_key


def test_environment_overrides_generated_credentials(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path))
    ensure_credentials(load_settings())
    monkeypatch.setenv("LAKEHOUSE_S3_SECRET_KEY", "from-the-environment")
    assert load_settings().s3_secret_key == "from-the-environment"


def test_endpoints_follow_hosts_and_ports():
    settings = Settings(kafka_host="kafka", kafka_port=9092, s3_host="minio", s3_port=9000)
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.s3_endpoint == "http://minio:9000"
    mongo = Settings(mongo_host="mongo", mongo_port=27017)
    assert mongo.mongo_uri() == "mongodb://mongo:27017/"


def test_spark_conf_sets_platform_invariants(tmp_path):
    conf = spark_conf(Settings(home=tmp_path, s3_access_key="a", s3_secret_key="b"))
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.sql.streaming.stateStore.providerClass"].endswith(
        "RocksDBStateStoreProvider"
    )
    assert conf["spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled"] == "true"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
