"""Fetch what pip cannot install: the Kafka broker and Spark's extra jars, from Maven Central,
and the FerretDB server (MongoDB wire protocol), built from its Go module.

Jars go to ``<home>/jars/<set>``; a set is complete when its stamp file names the hash of
the pom it was made from, so a changed pom triggers a re-fetch and a finished one is
never fetched twice. FerretDB goes to ``<jars>/ferretdb-<version>/ferretdb`` the same way:
its stamp names the version, so a finished build (about 15 minutes cold) is never redone,
and a test platform sharing the jars folder shares the binary.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pyspark

from lakehouse.settings import FERRETDB_VERSION, PROJECT_ROOT, Settings

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


FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
# Where Go's own tarball installs it, for a shell whose PATH lacks it.
_GO_FALLBACK = Path("/usr/local/go/bin/go")


def _ferretdb_stamp(settings: Settings) -> Path:
    return settings.ferretdb_binary.parent / ".complete"


def ferretdb_ready(settings: Settings) -> bool:
    binary, stamp = settings.ferretdb_binary, _ferretdb_stamp(settings)
    return (
        binary.is_file()
        and os.access(binary, os.X_OK)
        and stamp.exists()
        and stamp.read_text().strip() == FERRETDB_VERSION
    )


def find_go(which: Callable[[str], str | None] = shutil.which) -> str | None:
    found = which("go")
    if found:
        return found
    return str(_GO_FALLBACK) if os.access(_GO_FALLBACK, os.X_OK) else None


def _go(go: str, args: Sequence[str], cwd: Path, what: str) -> str:
    env = dict(os.environ)
    # The source copy has no VCS metadata of its own; without this, a copy under a git
    # checkout would be stamped with (or fail on) that checkout's state.
    env["GOFLAGS"] = f"{env.get('GOFLAGS', '')} -buildvcs=false".strip()
    result = subprocess.run([go, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
        raise InstallError(f"Go could not {what}:\n{tail}")
    return result.stdout


def build_ferretdb(
    settings: Settings, log: Callable[[str], None] = print, *, go: str | None = None
) -> Path:
    """Build the FerretDB server from its Go module, once (idempotent). Returns the binary.

    `go install` is not enough: the module ships an empty build/version/version.txt and the
    binary panics at start without a version, so the module is copied, the version
    written, and `go build` run in the copy.
    """
    binary = settings.ferretdb_binary
    if ferretdb_ready(settings):
        return binary
    go = go or find_go()
    if go is None:
        raise InstallError(
            f"Go is not installed: install Go 1.24 or newer (`go` on PATH) to build the "
            f"FerretDB {FERRETDB_VERSION} server the platform runs for MongoDB clients."
        )
    log(
        f"building FerretDB {FERRETDB_VERSION} from its Go module (about 15 minutes the first time)"
    )
    binary.parent.mkdir(parents=True, exist_ok=True)
    staged = binary.parent / f".ferretdb.{os.getpid()}.tmp"
    try:
        with tempfile.TemporaryDirectory(prefix="ferretdb-build-") as work:
            downloaded = _go(
                go,
                ["mod", "download", "-json", f"{FERRETDB_MODULE}@{FERRETDB_VERSION}"],
                Path(work),
                f"download {FERRETDB_MODULE}@{FERRETDB_VERSION}",
            )
            source = Path(work) / "src"
            shutil.copytree(json.loads(downloaded)["Dir"], source)
            for path in (source, *source.rglob("*")):  # the module cache is read-only
                path.chmod(path.stat().st_mode | stat.S_IWUSR)
            (source / "build" / "version" / "version.txt").write_text(FERRETDB_VERSION + "\n")
            _go(go, ["build", "-o", str(staged), "./cmd/ferretdb"], source, "build FerretDB")
        os.replace(staged, binary)
    finally:
        staged.unlink(missing_ok=True)
    stamp = _ferretdb_stamp(settings)
    stamp.with_suffix(".tmp").write_text(FERRETDB_VERSION + "\n")
    os.replace(stamp.with_suffix(".tmp"), stamp)
    log(f"FerretDB {FERRETDB_VERSION} ready: {binary} ({binary.stat().st_size / 1e6:.0f} MB)")
    return binary


def install(
    settings: Settings, log: Callable[[str], None] = print, *, ferretdb: bool = True
) -> None:
    """The jar sets and, unless `ferretdb` is False (the compose image runs mongod in its own
    container), the FerretDB server."""
    settings.home.mkdir(parents=True, exist_ok=True)
    for name in JAR_SETS:
        fetch_jar_set(settings, name, log)
    if ferretdb:
        build_ferretdb(settings, log)
