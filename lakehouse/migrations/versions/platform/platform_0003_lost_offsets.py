"""stream_progress counts the Kafka offsets a batch skipped because Kafka no longer held
them (only when the platform is set to skip them rather than fail).

Revision ID: platform_0003
Revises: platform_0002
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "platform_0003"
down_revision: str | Sequence[str] | None = "platform_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE stream_progress ADD COLUMN kafka_offsets_lost bigint,"
        " ADD COLUMN kafka_offsets_lost_by_partition jsonb"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE stream_progress DROP COLUMN kafka_offsets_lost,"
        " DROP COLUMN kafka_offsets_lost_by_partition"
    )
