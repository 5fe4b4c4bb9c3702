"""A DuckDB connection that reads the lake on the S3 server through the Delta log.

Extensions come from the pip-installed duckdb-ext-* packages (never downloaded at run
time); the S3 secret is the same one dbt_project/profiles.yml builds.
"""

from __future__ import annotations

import duckdb

from lakehouse.settings import Settings


def lake_connection(settings: Settings, database: str = ":memory:") -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(
        database,
        config={
            "autoinstall_known_extensions": "false",
            "extension_directory": str(settings.duckdb_extension_dir),
        },
    )
    con.execute("LOAD httpfs")
    con.execute("LOAD delta")
    con.execute(
        """CREATE OR REPLACE SECRET lake (TYPE s3, KEY_ID ?, SECRET ?, ENDPOINT ?,
           URL_STYLE 'path', USE_SSL false, REGION ?)""",
        [
            settings.s3_access_key or "",
            settings.s3_secret_key or "",
            f"{settings.s3_host}:{settings.s3_port}",
            settings.s3_region,
        ],
    )
    return con
