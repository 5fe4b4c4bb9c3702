"""stream_progress counts the duplicates a deduplicating query dropped in each batch.

Revision ID: platform_0002
Revises: platform_0001
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "platform_0002"
down_revision: str | Sequence[str] | None = "platform_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE stream_progress ADD COLUMN duplicates_dropped bigint NOT NULL DEFAULT 0"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE stream_progress DROP COLUMN duplicates_dropped")
