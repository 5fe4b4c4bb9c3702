"""Market serving tables of one namespace's schema, readable by the dashboard's role.

The same tables the serving sync created with CREATE TABLE IF NOT EXISTS before migrations
existed, so schemas made by that code are adopted as they are. Tables are unqualified: the
environment sets search_path to the target schema. Nothing is granted to PUBLIC: the
platform user's default privileges (set by `lakehouse up`, or postgres-init.sh under
compose) give the dashboard's read-only role USAGE on each new schema and SELECT on each
new table, these and those of later migrations. `lakehouse up` revokes what this revision
granted to PUBLIC before it stopped doing so (infra/postgres.py).

Revision ID: serving_0001
Revises:
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

from lakehouse.migrations import target_schema

revision: str = "serving_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("serving",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""
CREATE TABLE IF NOT EXISTS trades_enriched (
    trade_id text PRIMARY KEY,
    symbol text NOT NULL,
    event_time timestamptz NOT NULL,
    price double precision NOT NULL,
    volume bigint NOT NULL,
    company_name text,
    sector text
);
CREATE INDEX IF NOT EXISTS trades_enriched_symbol_time
    ON trades_enriched (symbol, event_time);
CREATE TABLE IF NOT EXISTS trades_ohlcv_1m (
    symbol text NOT NULL,
    minute timestamptz NOT NULL,
    open double precision NOT NULL,
    high double precision NOT NULL,
    low double precision NOT NULL,
    close double precision NOT NULL,
    volume bigint NOT NULL,
    vwap double precision,
    trade_count bigint NOT NULL,
    PRIMARY KEY (symbol, minute)
);
CREATE TABLE IF NOT EXISTS sync_progress (
    source text PRIMARY KEY,
    delta_version bigint NOT NULL,
    rows_synced bigint NOT NULL DEFAULT 0,
    synced_at timestamptz NOT NULL DEFAULT now()
);
""")


def downgrade() -> None:
    schema = target_schema()
    # No-ops unless the schema was made when this revision still granted to PUBLIC.
    op.execute(f"""
ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" REVOKE SELECT ON TABLES FROM PUBLIC;
REVOKE USAGE ON SCHEMA "{schema}" FROM PUBLIC;
DROP TABLE IF EXISTS sync_progress;
DROP TABLE IF EXISTS trades_ohlcv_1m;
DROP TABLE IF EXISTS trades_enriched;
""")
