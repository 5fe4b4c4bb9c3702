"""Run dbt on the lake: the environment profiles.yml reads, built from the settings."""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from lakehouse.settings import PROJECT_ROOT, Settings

DBT_PROJECT = PROJECT_ROOT / "dbt_project"
log = logging.getLogger(__name__)


@contextmanager
def one_dbt_at_a_time(settings: Settings) -> Iterator[None]:
    """Hold the marts' dbt lock: every dbt run opens the DuckDB file for writing, which one
    process at a time can do (the analytics DAG's build, the daily full test, a replay's
    rebuild and `lakehouse dbt` would otherwise fail on each other's lock)."""
    settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    with open(settings.duckdb_path.with_suffix(".dbt.lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another dbt run on %s to finish", settings.duckdb_path)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def dbt_env(settings: Settings, lake_root: str | None = None) -> dict[str, str]:
    """What dbt_project/profiles.yml and the sources read; lake_root is an s3:// URI."""
    settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "LAKEHOUSE_DUCKDB_PATH": str(settings.duckdb_path),
        "LAKEHOUSE_DUCKDB_EXTENSION_DIR": str(settings.duckdb_extension_dir),
        "LAKEHOUSE_S3_ACCESS_KEY": settings.s3_access_key or "",
        "LAKEHOUSE_S3_SECRET_KEY": settings.s3_secret_key or "",
        "LAKEHOUSE_S3_HOST": settings.s3_host,
        "LAKEHOUSE_S3_PORT": str(settings.s3_port),
        "LAKEHOUSE_S3_REGION": settings.s3_region,
        # DuckDB speaks s3://; Spark's layouts say s3a:// for the same objects.
        "LAKEHOUSE_DBT_LAKE_ROOT": (lake_root or settings.lake_uri).replace("s3a://", "s3://", 1),
    }


def run_dbt(
    settings: Settings, args: Sequence[str], *, lake_root: str | None = None, capture: bool = False
) -> subprocess.CompletedProcess:
    command = [
        str(settings.venv_bin / "dbt"),
        *args,
        "--project-dir",
        str(DBT_PROJECT),
        "--profiles-dir",
        str(DBT_PROJECT),
    ]
    with one_dbt_at_a_time(settings):
        return subprocess.run(
            command,
            env=dbt_env(settings, lake_root),
            cwd=DBT_PROJECT,
            capture_output=capture,
            text=True,
            check=False,
        )


class DbtFailed(RuntimeError):
    pass


def _checked(settings: Settings, args: list[str], lake_root: str | None) -> str:
    result = run_dbt(settings, args, lake_root=lake_root, capture=True)
    if result.returncode != 0:
        raise DbtFailed(
            f"dbt {' '.join(args)} failed (exit {result.returncode}):\n"
            f"{result.stdout[-8000:]}{result.stderr[-4000:]}"
        )
    return result.stdout


def build_marts(
    settings: Settings,
    *,
    full_refresh: bool = False,
    lake_root: str | None = None,
    select: Sequence[str] | None = None,
) -> str:
    """`dbt build` for the DAGs: its output, or DbtFailed carrying it. `select`: dbt
    selectors (pipelines' `dbt_select`), all models when None. A full refresh also rebuilds
    the incremental models from all of the lake (after a replay)."""
    args = ["build", *(["--full-refresh"] if full_refresh else [])]
    if select:
        args += ["--select", *select]
    return _checked(settings, args, lake_root)


def models_built(settings: Settings, select: str) -> dict[str, bool]:
    """Each model `select` names, and whether the marts' DuckDB file holds it yet (none on
    a new platform until the analytics DAG's first build)."""
    import duckdb

    listed = ["--quiet", "ls", "--select", select, "--resource-type", "model", "--output", "name"]
    models = _checked(settings, listed, None).split()
    tables: list[tuple[str]] = []
    if settings.duckdb_path.exists():
        # Under the dbt lock: a build holds the file for writing, and then no one may read it.
        with (
            one_dbt_at_a_time(settings),
            duckdb.connect(str(settings.duckdb_path), read_only=True) as con,
        ):
            tables = con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    stored = {name for (name,) in tables}
    return {model: model in stored for model in models}


def check_whole_lake(settings: Settings, select: str, *, lake_root: str | None = None) -> str:
    """`dbt test` of the selected models over the whole lake (a scheduled build tests only
    what it read and wrote): its output, or DbtFailed carrying it."""
    return _checked(settings, ["test", "--select", select], lake_root)
