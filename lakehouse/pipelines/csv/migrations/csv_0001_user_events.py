"""The CSV drops pipeline's serving tables and the analysts' views.

`user_events` holds each accepted row once: the event id is its key, so a file dropped
twice (under any name) adds nothing. `user_events_quarantine` holds each refused row with
the reason, the file and the line; `csv_files` one row per file the stream took, with its
counts (rows = loaded + already_loaded + quarantined for a read file; a rejected file was
not read and is moved aside with its reason). The views are documented in the README.

Revision ID: csv_0001
"""

from alembic import op

revision = "csv_0001"
down_revision = None
branch_labels = ("serving_csv",)
depends_on = "serving_0002"  # the sink ledger its loads commit with


def upgrade() -> None:
    op.execute("""
CREATE TABLE user_events (
    event_id text PRIMARY KEY,
    user_id text NOT NULL CHECK (user_id <> ''),
    product_id text NOT NULL CHECK (product_id <> ''),
    event_type text NOT NULL
        CHECK (event_type IN ('view', 'add_to_cart', 'purchase', 'remove_from_cart')),
    product_price numeric(12, 2) NOT NULL CHECK (product_price > 0),
    event_timestamp timestamptz NOT NULL,
    processed_at timestamptz NOT NULL,
    source_file text NOT NULL,
    line_number integer NOT NULL CHECK (line_number > 1)
);
CREATE TABLE user_events_quarantine (
    source_file text NOT NULL,
    line_number integer NOT NULL,
    reason text NOT NULL,
    raw_line text NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_file, line_number)
);
CREATE TABLE csv_files (
    source_file text PRIMARY KEY,
    status text NOT NULL CHECK (status IN ('loaded', 'rejected')),
    reason text,
    bytes bigint NOT NULL,
    rows integer NOT NULL,
    loaded integer NOT NULL,
    already_loaded integer NOT NULL,
    quarantined integer NOT NULL,
    batch_id bigint NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    CHECK (status = 'rejected' OR rows = loaded + already_loaded + quarantined)
);
CREATE VIEW purchase_analytics AS
SELECT product_id,
       (event_timestamp AT TIME ZONE 'UTC')::date AS event_date,
       count(*) FILTER (WHERE event_type = 'view') AS views,
       count(*) FILTER (WHERE event_type = 'add_to_cart') AS add_to_carts,
       count(*) FILTER (WHERE event_type = 'remove_from_cart') AS removes_from_cart,
       count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
       count(DISTINCT user_id) FILTER (WHERE event_type = 'purchase') AS buyers,
       coalesce(sum(product_price) FILTER (WHERE event_type = 'purchase'), 0) AS revenue,
       round(count(*) FILTER (WHERE event_type = 'purchase')::numeric
             / nullif(count(*) FILTER (WHERE event_type = 'view'), 0), 4)
           AS view_to_purchase_rate
FROM user_events
GROUP BY product_id, (event_timestamp AT TIME ZONE 'UTC')::date;
CREATE VIEW user_activity_summary AS
SELECT user_id,
       count(*) AS events,
       count(*) FILTER (WHERE event_type = 'view') AS views,
       count(*) FILTER (WHERE event_type = 'add_to_cart') AS add_to_carts,
       count(*) FILTER (WHERE event_type = 'remove_from_cart') AS removes_from_cart,
       count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
       count(DISTINCT product_id) AS distinct_products,
       coalesce(sum(product_price) FILTER (WHERE event_type = 'purchase'), 0) AS total_spend,
       min(event_timestamp) AS first_seen,
       max(event_timestamp) AS last_seen
FROM user_events
GROUP BY user_id;
""")


def downgrade() -> None:
    op.execute("""
DROP VIEW user_activity_summary;
DROP VIEW purchase_analytics;
DROP TABLE csv_files;
DROP TABLE user_events_quarantine;
DROP TABLE user_events;
""")
