"""alembic's environment: online only, on the connection `lakehouse.migrations` passes in.

The caller owns that connection's transaction (it holds the advisory lock), so alembic
runs every migration inside it and the caller commits. The target schema comes in the
config's attributes: it becomes the search_path (unqualified names in the migrations land
there) and holds the version table.
"""

from __future__ import annotations

from alembic import context

from lakehouse.migrations import validate_schema

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None or context.is_offline_mode():
        raise RuntimeError(
            "These migrations run online on a given connection: call "
            "lakehouse.migrations.upgrade_platform or upgrade_serving."
        )
    schema = validate_schema(config.attributes["schema"])
    applied: list[str] = config.attributes.setdefault("applied", [])

    def record(*, step, **_) -> None:
        if step.is_upgrade and not step.is_stamp:
            applied.append(step.up_revision_id)

    # SET LOCAL: it ends with the caller's transaction, the session keeps nothing.
    connection.exec_driver_sql(f'SET LOCAL search_path TO "{schema}"')
    context.configure(
        connection=connection,
        version_table_schema=schema,
        transactional_ddl=True,
        on_version_apply=[record],
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
