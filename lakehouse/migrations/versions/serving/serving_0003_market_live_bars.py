"""The market's live one-minute bars: written by the enrichment stream itself, per
micro-batch, so the dashboard shows a trade seconds after silver has it (the serving sync
and the dbt marts follow minutes later).

Each row holds what a bar needs to absorb the next batch's part of the same minute: the
first and last trade by (event_time, trade_id) with their prices, the running high, low,
volume, notional and count. Rows older than a few hours (by event time) are pruned: the
marts hold the history.

Revision ID: serving_0003
Revises: serving_0002
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "serving_0003"
down_revision: str | Sequence[str] | None = "serving_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""
CREATE TABLE trades_live_1m (
    symbol text NOT NULL,
    minute timestamptz NOT NULL,
    open double precision NOT NULL,
    open_at timestamptz NOT NULL,
    open_trade_id text NOT NULL,
    high double precision NOT NULL,
    low double precision NOT NULL,
    close double precision NOT NULL,
    close_at timestamptz NOT NULL,
    close_trade_id text NOT NULL,
    volume bigint NOT NULL,
    notional double precision NOT NULL,
    trade_count bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, minute)
);
CREATE INDEX trades_live_1m_minute ON trades_live_1m (minute);
""")


def downgrade() -> None:
    op.execute("DROP TABLE trades_live_1m")
