"""The pings pipeline's serving table (a migration shipped with the pipeline).

Revision ID: pings_0001
"""

from alembic import op

revision = "pings_0001"
down_revision = None
branch_labels = ("serving_pings",)
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE pings (ping_id text PRIMARY KEY, value bigint NOT NULL)")


def downgrade() -> None:
    op.execute("DROP TABLE pings")
