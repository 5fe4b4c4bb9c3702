"""The orders pipeline's serving table: the latest state of each order, upserted by order
id with the version guarding against an older state (spark/jobs/orders/matching.py).

Revision ID: orders_0001
"""

from alembic import op

revision = "orders_0001"
down_revision = None
branch_labels = ("serving_orders",)
depends_on = "serving_0002"  # the sink ledger its writes commit with


def upgrade() -> None:
    op.execute("""
CREATE TABLE order_status (
    order_id text PRIMARY KEY,
    status text NOT NULL CHECK (status IN ('awaiting_payment', 'awaiting_order', 'paid',
        'amount_mismatch', 'cancelled', 'refunded', 'expired')),
    version bigint NOT NULL CHECK (version > 0),
    order_amount numeric(14, 2),
    paid_amount numeric(14, 2),
    order_time timestamptz,
    payment_time timestamptz,
    order_to_payment_s double precision,
    changed_at timestamptz NOT NULL,
    deadline timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_status_status ON order_status (status, changed_at);
""")


def downgrade() -> None:
    op.execute("DROP TABLE order_status")
