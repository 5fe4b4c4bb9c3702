"""Versioned migrations on the real Postgres of the test platform.

Every test works in a schema or database of its own and drops it, so the platform's own
tables and serving schemas are never touched.
"""

from __future__ import annotations

import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic import command
from psycopg import sql

from lakehouse.migrations import (
    PLATFORM_VERSIONS,
    SERVING_VERSIONS,
    MigrationError,
    _migrate,
    upgrade_platform,
    upgrade_serving,
)
from lakehouse.settings import Settings

SERVING_TABLES = {
    "alembic_version",
    "sync_progress",
    "trades_enriched",
    "trades_ohlcv_1m",
    "sink_batches",
    "trades_live_1m",
}
SERVING_REVISIONS = ["serving_0001", "serving_0002", "serving_0003"]  # applied in order
PLATFORM_REVISIONS = ["platform_0001", "platform_0002", "platform_0003", "platform_0004"]
PLATFORM_TABLES = {"maintenance_requests", "stream_drivers", "stream_heartbeat", "stream_progress"}

# How the modules created their tables before migrations: stream_progress from before the
# lag column, and one row that adoption must keep.
OLD_DDL = """
CREATE TABLE IF NOT EXISTS stream_drivers (
    job_key text PRIMARY KEY,
    desired text NOT NULL DEFAULT 'running' CHECK (desired IN ('running', 'stopped')),
    pid integer,
    pgid integer,
    host text,
    started_at timestamptz,
    restarts integer NOT NULL DEFAULT 0,
    last_start_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS stream_progress (
    query_id text NOT NULL,
    batch_id bigint NOT NULL,
    query_name text,
    run_id text NOT NULL,
    batch_time timestamptz NOT NULL,
    input_rows bigint NOT NULL,
    input_rows_per_s double precision,
    processed_rows_per_s double precision,
    duration_ms bigint,
    watermark timestamptz,
    rows_dropped_by_watermark bigint NOT NULL,
    state_rows bigint,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (query_id, batch_id)
);
INSERT INTO stream_drivers (job_key, restarts) VALUES ('market', 3);
"""


def _connect(settings: Settings, *, dashboard: bool = False) -> psycopg.Connection:
    return psycopg.connect(settings.postgres_dsn(dashboard=dashboard), autocommit=True)


def _tables(settings: Settings, schema: str) -> set[str]:
    with _connect(settings) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", [schema])
        return {name for (name,) in rows}


def _versions(settings: Settings, schema: str) -> set[str]:
    with _connect(settings) as conn:
        query = sql.SQL("SELECT version_num FROM {}.alembic_version")
        return {v for (v,) in conn.execute(query.format(sql.Identifier(schema)))}


def _downgrade_to_base(config) -> None:
    command.downgrade(config, "base")


@pytest.fixture
def schema(platform: Settings) -> Iterator[str]:
    name = f"serving_mig{uuid.uuid4().hex[:12]}"
    yield name
    with _connect(platform) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def scratch_db(platform: Settings) -> Iterator[Settings]:
    """The platform's settings pointed at a new, empty database."""
    name = f"lakehouse_mig{uuid.uuid4().hex[:12]}"
    with _connect(platform) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield platform.model_copy(update={"postgres_db": name})
    with _connect(platform) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _extra_location(folder: Path, table: str) -> tuple[Path, str]:
    """A pipeline's own migration folder: one revision on a branch of its own."""
    revision = f"extra_{uuid.uuid4().hex[:12]}"
    folder.mkdir()
    (folder / f"{revision}.py").write_text(
        textwrap.dedent(f"""
            from alembic import op

            revision = "{revision}"
            down_revision = None
            branch_labels = ("serving_{revision}",)
            depends_on = None


            def upgrade():
                op.execute("CREATE TABLE {table} (id bigint PRIMARY KEY, note text)")


            def downgrade():
                op.execute("DROP TABLE {table}")
        """)
    )
    return folder, revision


@pytest.mark.parametrize(
    "name",
    ["", "Serving", "1serving", "serving-x", 'x"; DROP TABLE y; --', "s" * 64, "public", "pg_x"],
)
def test_an_invalid_schema_name_is_refused_before_any_sql(name: str) -> None:
    # Nothing listens on port 1: reaching Postgres would raise a connection error instead.
    settings = Settings(postgres_port=1, postgres_password="unused")
    with pytest.raises(ValueError, match=r"(?i)schema"):
        upgrade_serving(settings, name)


@pytest.mark.services
def test_upgrade_serving_creates_the_tables_and_records_the_head(
    platform: Settings, schema: str
) -> None:
    assert upgrade_serving(platform, schema) == SERVING_REVISIONS
    assert _tables(platform, schema) == SERVING_TABLES
    assert _versions(platform, schema) == {SERVING_REVISIONS[-1]}
    with _connect(platform) as conn:
        (index,) = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = %s",
            [schema, "trades_enriched_symbol_time"],
        ).fetchone()
    assert "(symbol, event_time)" in index
    # The dashboard's read-only role reads the new schema.
    with _connect(platform, dashboard=True) as conn:
        query = sql.SQL("SELECT count(*) FROM {}.trades_ohlcv_1m").format(sql.Identifier(schema))
        assert conn.execute(query).fetchone() == (0,)

    assert upgrade_serving(platform, schema) == []

    # The revision's downgrade removes what it made; upgrading again restores it.
    _migrate(platform, schema, [SERVING_VERSIONS], _downgrade_to_base)
    assert _tables(platform, schema) == {"alembic_version"}
    assert upgrade_serving(platform, schema) == SERVING_REVISIONS


@pytest.mark.services
def test_an_extra_location_adds_its_branch_on_the_next_upgrade(
    platform: Settings, schema: str, tmp_path: Path
) -> None:
    assert upgrade_serving(platform, schema) == SERVING_REVISIONS
    folder, revision = _extra_location(tmp_path / "pipeline_migrations", "pipeline_events")

    assert upgrade_serving(platform, schema, [folder]) == [revision]
    assert _tables(platform, schema) == SERVING_TABLES | {"pipeline_events"}
    assert _versions(platform, schema) == {SERVING_REVISIONS[-1], revision}
    # Tables of later migrations are readable by the dashboard role (default privileges).
    with _connect(platform, dashboard=True) as conn:
        query = sql.SQL("SELECT count(*) FROM {}.pipeline_events").format(sql.Identifier(schema))
        assert conn.execute(query).fetchone() == (0,)

    assert upgrade_serving(platform, schema, [folder]) == []
    with pytest.raises(MigrationError, match="extra_locations"):
        upgrade_serving(platform, schema)


@pytest.mark.services
def test_concurrent_upgrades_of_one_schema_serialise(platform: Settings, schema: str) -> None:
    start = threading.Barrier(2)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def upgrade() -> None:
        start.wait()
        try:
            results.append(upgrade_serving(platform, schema))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=upgrade) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert sorted(results) == [[], SERVING_REVISIONS]


@pytest.mark.services
def test_upgrade_platform_adopts_tables_of_the_old_ddl(scratch_db: Settings) -> None:
    with _connect(scratch_db) as conn:
        conn.execute(OLD_DDL)

    assert upgrade_platform(scratch_db) == PLATFORM_REVISIONS
    assert _tables(scratch_db, "public") == PLATFORM_TABLES | {"alembic_version"}
    assert _versions(scratch_db, "public") == {PLATFORM_REVISIONS[-1]}
    with _connect(scratch_db) as conn:
        assert conn.execute("SELECT job_key, restarts FROM stream_drivers").fetchall() == [
            ("market", 3)
        ]
        columns = conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name = 'stream_progress'"
        ).fetchall()
        assert ("kafka_records_behind",) in columns
        assert ("duplicates_dropped",) in columns
        assert conn.execute(
            "SELECT 1 FROM pg_indexes WHERE indexname = 'maintenance_requests_pending'"
        ).fetchone()
    assert upgrade_platform(scratch_db) == []

    _migrate(scratch_db, "public", [PLATFORM_VERSIONS], _downgrade_to_base)
    assert _tables(scratch_db, "public") == {"alembic_version"}
    assert upgrade_platform(scratch_db) == PLATFORM_REVISIONS
