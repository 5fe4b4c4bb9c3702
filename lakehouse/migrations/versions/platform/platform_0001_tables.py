"""Platform tables: stream supervision, stream progress, maintenance requests.

The same tables the modules created with CREATE TABLE IF NOT EXISTS before migrations
existed, so databases made by that code are adopted as they are.

Revision ID: platform_0001
Revises:
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "platform_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("platform",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""
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
CREATE TABLE IF NOT EXISTS stream_heartbeat (
    job_key text NOT NULL,
    query_name text NOT NULL,
    last_event_at timestamptz NOT NULL,
    last_batch_id bigint,
    PRIMARY KEY (job_key, query_name)
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
    kafka_records_behind bigint,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (query_id, batch_id)
);
-- An adopted stream_progress may predate the lag column.
ALTER TABLE stream_progress ADD COLUMN IF NOT EXISTS kafka_records_behind bigint;
CREATE TABLE IF NOT EXISTS maintenance_requests (
    id bigserial PRIMARY KEY,
    job_key text NOT NULL,
    table_name text NOT NULL,
    action text NOT NULL CHECK (action IN ('optimize', 'vacuum')),
    params jsonb NOT NULL DEFAULT '{}',
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'done', 'failed')),
    requested_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    result jsonb,
    error text
);
CREATE INDEX IF NOT EXISTS maintenance_requests_pending
    ON maintenance_requests (job_key) WHERE status IN ('pending', 'running');
""")


def downgrade() -> None:
    op.execute("""
DROP TABLE IF EXISTS maintenance_requests;
DROP TABLE IF EXISTS stream_progress;
DROP TABLE IF EXISTS stream_heartbeat;
DROP TABLE IF EXISTS stream_drivers;
""")
