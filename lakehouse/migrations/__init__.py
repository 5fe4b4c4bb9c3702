"""Versioned Postgres migrations (alembic), run from code: no alembic.ini, no CLI.

Two kinds of migrations, each in its own base folder under ``versions/``:

- ``versions/platform/``: the platform's tables in schema ``public`` (branch label
  ``platform``), applied by `upgrade_platform`; version table ``public.alembic_version``.
- ``versions/serving/``: the serving tables of one namespace (branch label ``serving``),
  applied by `upgrade_serving` inside the schema it is given; each serving schema has its
  own ``<schema>.alembic_version``, so ``serving`` and ``serving_ab12cd`` move independently.

A migration's kind is the folder it is found in, i.e. the function that folder is passed
to. The platform's next change is a new file in its kind's folder with ``down_revision``
set to that branch's current head. A pipeline declared outside the platform ships a folder
of its own and passes it in ``extra_locations`` to the function of its kind, on every
upgrade of that schema (a version table naming a revision of a folder left out is refused
with MigrationError). Its first revision starts a branch of its own, for example::

    revision = "orders_0001"          # unique among all folders of the kind
    down_revision = None
    branch_labels = ("serving_orders",)
    depends_on = "serving"            # only if it needs the platform's serving tables

    def upgrade():
        op.execute("CREATE TABLE orders (id bigint PRIMARY KEY)")

One upgrade to "heads" applies every branch of the kind.

Migrations run with ``search_path`` set to their target schema, so table names in their
SQL are unqualified; `target_schema` returns that schema (validated) for statements that
must name it, such as GRANT. All migrations of one call run in one transaction that first
takes a Postgres advisory lock keyed by the schema, so concurrent callers (the serving sync
and `lakehouse up`) serialise and the second one finds nothing left to apply.
"""

from __future__ import annotations

import logging
import os
import re
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.pool import NullPool

from lakehouse.settings import Settings

if TYPE_CHECKING:
    from alembic.config import Config

    from lakehouse.layout import Layout

__all__ = [
    "PLATFORM_VERSIONS",
    "SERVING_VERSIONS",
    "MigrationError",
    "target_schema",
    "upgrade_layout",
    "upgrade_platform",
    "upgrade_serving",
    "validate_schema",
]

log = logging.getLogger(__name__)
# alembic logs its plugin set-up on import and every step at INFO; ours say what matters.
# Hence alembic is imported in the functions, after this line.
logging.getLogger("alembic").setLevel(logging.WARNING)

MIGRATIONS_DIR = Path(__file__).resolve().parent
PLATFORM_VERSIONS = MIGRATIONS_DIR / "versions" / "platform"
SERVING_VERSIONS = MIGRATIONS_DIR / "versions" / "serving"
PLATFORM_SCHEMA = "public"

LOCK_CLASS = 0x4C4D  # first key of every migration lock ("LM"); the second is the schema's hash
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class MigrationError(RuntimeError):
    """The database cannot be brought to the head revisions; the message says why."""


def validate_schema(schema: str) -> str:
    """The schema name, if it is a plain identifier; it is put into SQL text (DDL has no
    parameters), so nothing else may pass."""
    # fullmatch: `$` alone would also accept a name ending in a newline.
    if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
        raise ValueError(
            f"Invalid schema name {schema!r}: use 1 to 63 lowercase letters, digits or "
            "underscores, not starting with a digit."
        )
    return schema


def target_schema() -> str:
    """The schema the running migration applies to; only valid inside a migration."""
    from alembic import context

    return validate_schema(context.config.attributes["schema"])


def upgrade_platform(settings: Settings, extra_locations: Sequence[Path] = ()) -> list[str]:
    """Bring the platform tables (schema public) to head; returns the revisions applied."""
    return _migrate(settings, PLATFORM_SCHEMA, [PLATFORM_VERSIONS, *extra_locations], _to_heads)


def upgrade_serving(
    settings: Settings, schema: str, extra_locations: Sequence[Path] = ()
) -> list[str]:
    """Create `schema` if missing and bring its serving tables to head; returns the
    revisions applied (empty when it was up to date)."""
    if validate_schema(schema) == PLATFORM_SCHEMA or schema.startswith("pg_"):
        raise ValueError(f"Schema {schema!r} is not for serving tables: use a schema of its own.")
    locations = [SERVING_VERSIONS, *extra_locations]
    return _migrate(settings, schema, locations, _to_heads, create_schema=True)


def upgrade_layout(settings: Settings, layout: Layout) -> list[str]:
    """The serving schema of the layout's namespace, with the migrations of every pipeline
    its registry declares."""
    return upgrade_serving(settings, layout.serving_schema, layout.registry.migration_locations)


def _to_heads(config: Config) -> None:
    from alembic import command

    command.upgrade(config, "heads")


def _config(connection: Connection, schema: str, locations: Sequence[Path]) -> Config:
    from alembic.config import Config

    config = Config()
    # The ini parser interpolates '%': escape it in paths.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    joined = os.pathsep.join(str(Path(p).resolve()) for p in locations)
    config.set_main_option("version_locations", joined.replace("%", "%%"))
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema
    config.attributes["applied"] = []
    return config


def _migrate(
    settings: Settings,
    schema: str,
    locations: Sequence[Path],
    run: Callable[[Config], None],
    *,
    create_schema: bool = False,
) -> list[str]:
    """Run `run` (an alembic command) on `schema` under the schema's migration lock, in one
    transaction; returns the revisions it upgraded to, in order."""
    validate_schema(schema)
    missing = [str(p) for p in locations if not Path(p).is_dir()]
    if missing:
        raise MigrationError(f"Migration folder(s) not found: {', '.join(missing)}.")
    engine = create_engine(
        settings.postgres_sqlalchemy_url(settings.postgres_db),
        poolclass=NullPool,
        connect_args={"connect_timeout": 10},
    )
    try:
        with engine.connect() as connection, connection.begin():
            # Released at commit or rollback: a crashed caller never leaves it behind.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:cls, :key)"),
                {"cls": LOCK_CLASS, "key": zlib.crc32(schema.encode()) & 0x7FFFFFFF},
            )
            if create_schema:
                connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            config = _config(connection, schema, locations)
            _check_known_revisions(connection, config, schema)
            run(config)
            applied: list[str] = config.attributes["applied"]
    finally:
        engine.dispose()
    for revision in applied:
        log.info("applied migration %s to schema %s", revision, schema)
    return applied


def _check_known_revisions(connection: Connection, config: Config, schema: str) -> None:
    """A version table naming a revision of a folder not passed this time is a caller's
    mistake; say so instead of alembic's bare "Can't locate revision"."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    current = MigrationContext.configure(
        connection, opts={"version_table_schema": schema}
    ).get_current_heads()
    script = ScriptDirectory.from_config(config)
    known = {revision.revision for revision in script.walk_revisions()}
    unknown = sorted(set(current) - known)
    if unknown:
        raise MigrationError(
            f"Schema {schema} is at revision(s) {', '.join(unknown)}, which none of the "
            "given migration folders defines: pass the folder of the pipeline that made "
            "them in extra_locations."
        )
