"""The ledger of micro-batches that streaming queries committed to this schema.

A query writing Postgres directly (not through the serving sync) inserts (sink, batch id)
in the same transaction as its rows: a batch replayed after a crash finds its row and is
skipped, so each batch is applied once. `sink` names the query and its checkpoint, so a
fresh checkpoint, which numbers batches from 0 again, does not collide with an old one.

Revision ID: serving_0002
Revises: serving_0001
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "serving_0002"
down_revision: str | Sequence[str] | None = "serving_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""
CREATE TABLE sink_batches (
    sink text NOT NULL,
    batch_id bigint NOT NULL,
    rows bigint NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sink, batch_id)
)
""")


def downgrade() -> None:
    op.execute("DROP TABLE sink_batches")
