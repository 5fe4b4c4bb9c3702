"""The web activity pipeline's serving tables, written by its Spark queries with COPY into a
staging table and INSERT ... ON CONFLICT DO UPDATE on these natural keys.

Revision ID: activity_0001
"""

from alembic import op

revision = "activity_0001"
down_revision = None
branch_labels = ("serving_activity",)
depends_on = "serving_0002"  # the sink ledger its writes commit with


def upgrade() -> None:
    op.execute("""
CREATE TABLE page_view_counts (
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    page text NOT NULL,
    views bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (window_start, page)
);
CREATE TABLE active_users (
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    active_users bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (window_start, window_end)
);
CREATE TABLE user_sessions (
    user_id text NOT NULL,
    session_id text NOT NULL,
    session_start timestamptz NOT NULL,
    session_end timestamptz NOT NULL,
    duration_s double precision NOT NULL,
    event_count bigint NOT NULL,
    pages_viewed bigint NOT NULL,
    end_reason text NOT NULL CHECK (end_reason IN ('end_event', 'timeout')),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, session_id, session_start)
);
CREATE INDEX user_sessions_end ON user_sessions (session_end);
""")


def downgrade() -> None:
    op.execute("DROP TABLE user_sessions; DROP TABLE active_users; DROP TABLE page_view_counts")
