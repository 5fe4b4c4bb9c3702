from lakehouse.install import artifact_name, jar_set_ready, spark_bundled_artifacts
from lakehouse.settings import Settings


def test_artifact_name_strips_versions():
    assert artifact_name("jackson-core-2.13.5.jar") == "jackson-core"
    assert artifact_name("delta-spark_4.2_2.13-4.4.0.jar") == "delta-spark_4.2_2.13"
    assert artifact_name("wildfly-openssl-2.2.5.Final.jar") == "wildfly-openssl"
    assert artifact_name("spark-sql-kafka-0-10_2.13-4.2.0.jar") == "spark-sql-kafka-0-10_2.13"
    assert artifact_name("zstd-jni-1.5.7-7.jar") == "zstd-jni"
    assert artifact_name("javassist-3.30.2-GA.jar") == "javassist"


def test_installed_spark_jars_never_duplicate_what_spark_ships():
    settings = Settings()
    assert jar_set_ready(settings, "spark"), "run `lakehouse install` first"
    installed = {artifact_name(j.name) for j in (settings.jars_dir / "spark").glob("*.jar")}
    assert {"hadoop-aws", "delta-spark_4.2_2.13", "spark-sql-kafka-0-10_2.13"} <= installed
    assert not installed & spark_bundled_artifacts()
