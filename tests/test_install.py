import json
import subprocess
from pathlib import Path

import pytest

from lakehouse import install as install_module
from lakehouse.install import (
    InstallError,
    artifact_name,
    build_ferretdb,
    ferretdb_ready,
    jar_set_ready,
    spark_bundled_artifacts,
)
from lakehouse.settings import FERRETDB_VERSION, Settings


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


# ---- FerretDB: built once from its Go module, cached beside the jars -----------------------


def ferretdb_settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", jars_path=tmp_path / "jars")


def fake_module(tmp_path: Path) -> Path:
    """A read-only stand-in for the module cache's FerretDB folder, version.txt empty."""
    module = tmp_path / "modcache" / "ferretdb@v"
    (module / "build" / "version").mkdir(parents=True)
    (module / "build" / "version" / "version.txt").write_text("")
    (module / "cmd" / "ferretdb").mkdir(parents=True)
    for path in sorted(module.rglob("*"), reverse=True):
        path.chmod(0o444 if path.is_file() else 0o555)
    return module


def fake_go(tmp_path: Path, module: Path) -> str:
    """`go mod download -json` names `module`; `go build -o OUT` writes an OUT that prints
    the version.txt and GOFLAGS it was built with (it runs in the build's working folder)."""
    go = tmp_path / "bin" / "go"
    go.parent.mkdir()
    go.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        f"  mod) echo '{json.dumps({'Dir': str(module)})}' ;;\n"
        '  build) printf \'#!/bin/sh\\necho "%s %s"\\n\' "$(cat build/version/version.txt)" '
        '"$GOFLAGS" > "$3"; chmod +x "$3" ;;\n'
        "  *) exit 1 ;;\n"
        "esac\n"
    )
    go.chmod(0o755)
    return str(go)


def test_ferretdb_binary_lives_beside_the_jars(tmp_path):
    settings = ferretdb_settings(tmp_path)
    assert (
        settings.ferretdb_binary == tmp_path / "jars" / f"ferretdb-{FERRETDB_VERSION}" / "ferretdb"
    )


def test_ferretdb_build_writes_the_version_and_stamps_the_binary(tmp_path):
    settings = ferretdb_settings(tmp_path)
    module = fake_module(tmp_path)
    logged: list[str] = []
    assert not ferretdb_ready(settings)
    binary = build_ferretdb(settings, logged.append, go=fake_go(tmp_path, module))
    assert binary == settings.ferretdb_binary and ferretdb_ready(settings)
    output = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout
    version, goflags = output.split(" ", 1)
    assert version == FERRETDB_VERSION  # written into the copy, the module cache untouched
    assert "-buildvcs=false" in goflags.split()
    assert (module / "build" / "version" / "version.txt").read_text() == ""
    assert {p.name for p in binary.parent.iterdir()} == {"ferretdb", ".complete"}
    assert "about 15 minutes the first time" in logged[0]


def test_a_finished_ferretdb_build_is_never_redone(tmp_path, monkeypatch):
    settings = ferretdb_settings(tmp_path)
    binary = settings.ferretdb_binary
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert not ferretdb_ready(settings), "a binary without its stamp is an interrupted build"
    (binary.parent / ".complete").write_text(FERRETDB_VERSION + "\n")
    assert ferretdb_ready(settings)

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"a finished build ran {args}")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    logged: list[str] = []
    assert build_ferretdb(settings, logged.append) == binary
    assert logged == []


def test_a_stale_ferretdb_stamp_rebuilds_and_a_missing_go_is_one_sentence(tmp_path, monkeypatch):
    settings = ferretdb_settings(tmp_path)
    binary = settings.ferretdb_binary
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    (binary.parent / ".complete").write_text("v1.0.0\n")
    assert not ferretdb_ready(settings)
    monkeypatch.setattr(install_module, "find_go", lambda: None)
    with pytest.raises(InstallError) as error:
        build_ferretdb(settings)
    message = str(error.value)
    assert message.startswith("Go is not installed: install Go 1.24 or newer"), message
    assert "\n" not in message
