"""stream_drivers remembers how many batches the job's queries had committed when its
driver last started: a driver that committed more before it died had recovered, and the
supervisor restarts it without backoff.

Revision ID: platform_0004
Revises: platform_0003
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "platform_0004"
down_revision: str | Sequence[str] | None = "platform_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE stream_drivers ADD COLUMN batches_at_start bigint")


def downgrade() -> None:
    op.execute("ALTER TABLE stream_drivers DROP COLUMN batches_at_start")
