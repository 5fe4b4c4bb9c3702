"""The CSV drops pipeline: shop events dropped as CSV files into a folder, loaded into
Postgres once each, with every refused row accounted for.

A folder (setting `csv_input`, a local path or an s3a:// prefix) -> Spark's file stream reads
each new file whole -> every line is parsed and cleaned by plain Python
(spark/jobs/csv/cleaning.py): refused rows go to the quarantine with the reason, the file
and the line number; a file that cannot be read at all is moved aside with its reason ->
one Postgres transaction per micro-batch: the batch in the sink ledger, the rows COPYed into
a staging table and inserted into `user_events` with ON CONFLICT DO NOTHING on the event id
(so a file dropped twice adds nothing), the quarantine and one row per file in `csv_files`.
Files are then archived (or deleted, `csv_after_load`). Analysts query the views
`purchase_analytics` and `user_activity_summary`.
Its Spark side is spark/jobs/csv/, its generator producers/csv_files.py, its serving tables
the migration beside this file.
"""

from __future__ import annotations

from pathlib import Path

from lakehouse.kit import Pipeline

# The header every file starts with, in this order.
COLUMNS = ("event_id", "user_id", "product_id", "event_type", "product_price", "event_timestamp")
EVENT_TYPES = ("view", "add_to_cart", "purchase", "remove_from_cart")

# Why a row is refused (the quarantine's `reason`), first rule that holds.
WRONG_COLUMN_COUNT = "wrong_column_count"
MISSING_VALUE = "missing_value"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
MALFORMED_PRICE = "malformed_price"
NON_POSITIVE_PRICE = "non_positive_price"
MALFORMED_TIMESTAMP = "malformed_timestamp"
VALUE_TOO_LONG = "value_too_long"  # an id or type longer than MAX_TEXT_LENGTH characters
MAX_TEXT_LENGTH = 256
ROW_REASONS = (
    WRONG_COLUMN_COUNT,
    MISSING_VALUE,
    UNKNOWN_EVENT_TYPE,
    MALFORMED_PRICE,
    NON_POSITIVE_PRICE,
    MALFORMED_TIMESTAMP,
    VALUE_TOO_LONG,
)

JOB = "csv_pipeline"
LOAD_QUERY = "csv_load"
# Where a file goes after its rows are committed, and where an unreadable one is moved:
# folders inside the input folder whose names start with "_", which Spark's file source
# never lists.
ARCHIVE_FOLDER = "_archive"
REJECTED_FOLDER = "_rejected"
# The driver's parameters (--param csv.NAME=VALUE) and their defaults.
DEFAULT_PARAMS = (("files_per_batch", "100"),)

PIPELINE = Pipeline(
    name="csv",
    job=JOB,
    queries="spark.jobs.csv.queries:CsvQueries",
    params=DEFAULT_PARAMS,
    other_queries=(LOAD_QUERY,),
    input_folder="csv_input_folder",
    migrations=Path(__file__).resolve().parent / "migrations",
    audit="producers.csv_audit:AUDIT",
    # Files are picked up within a minute of landing (one listing of the folder a minute).
    trigger_s=60.0,
)
