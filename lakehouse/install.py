"""Fetch what pip cannot install: the Kafka broker and Spark's extra jars, from Maven Central.

Jars go to ``<home>/jars/<set>``; a set is complete when its stamp file names the hash of
the pom it was made from, so a changed pom triggers a re-fetch and a finished one is
never fetched twice.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pyspark

from lakehouse.settings import PROJECT_ROOT, Settings

POM_DIR = PROJECT_ROOT / "infra" / "maven"
JAR_SETS = {"spark": POM_DIR / "spark-jars.pom.xml", "kafka": POM_DIR / "kafka.pom.xml"}
# "-4.2.0.jar", "-2.2.5.Final.jar", "-1.5.7-7.jar", but not the "-0-10" in "kafka-0-10_2.13"
_VERSION_SUFFIX = re.compile(r"-\d+(\.\d+)*(-\d+)?([.-][A-Za-z]\w*)?\.jar$")


class InstallError(RuntimeError):
    pass


def artifact_name(jar: str) -> str:
    """'jackson-core-2.13.5.jar' -> 'jackson-core'."""
    return _VERSION_SUFFIX.sub("", jar)


def spark_bundled_artifacts() -> set[str]:
    jars = Path(pyspark.__file__).parent / "jars"
    return {artifact_name(j.name) for j in jars.glob("*.jar")}


def _stamp(pom: Path) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()[:16]


def jar_set_ready(settings: Settings, name: str) -> bool:
    stamp = settings.jars_dir / name / ".complete"
    return stamp.exists() and stamp.read_text().strip() == _stamp(JAR_SETS[name])


def fetch_jar_set(settings: Settings, name: str, log: Callable[[str], None] = print) -> Path:
    """Download one jar set with Maven (idempotent). Returns its folder."""
    target = settings.jars_dir / name
    if jar_set_ready(settings, name):
        return target
    if shutil.which("mvn") is None:
        raise InstallError("Maven (mvn) is not installed: install it (apt-get install maven).")
    pom = JAR_SETS[name]
    log(f"fetching {name} jars from Maven Central ({pom.name})")
    with tempfile.TemporaryDirectory(dir=settings.home) as staging:
        result = subprocess.run(
            [
                "mvn",
                "-B",
                "-q",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            raise InstallError(f"Maven could not fetch the {name} jars:\n{tail}")
        if name == "spark":
            # Spark ships its own copies of many libraries; a second version of one on the
            # classpath is how NoSuchMethodError at start-up happens.
            bundled = spark_bundled_artifacts()
            for jar in Path(staging).glob("*.jar"):
                artifact = artifact_name(jar.name)
                if artifact in bundled or artifact.startswith("jackson-"):
                    jar.unlink()
        if target.exists():
            shutil.rmtree(target)
        shutil.move(staging, target)
    (target / ".complete").write_text(_stamp(pom) + "\n")
    jars = list(target.glob("*.jar"))
    size_mb = sum(j.stat().st_size for j in jars) / 1e6
    log(f"{name} jars ready: {len(jars)} jars, {size_mb:.0f} MB")
    return target


def install(settings: Settings, log: Callable[[str], None] = print) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    for name in JAR_SETS:
        fetch_jar_set(settings, name, log)
