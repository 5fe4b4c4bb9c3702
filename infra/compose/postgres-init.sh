#!/usr/bin/env bash
# First-start set-up of the compose deployment's Postgres (run once by the postgres image
# from /docker-entrypoint-initdb.d, on an empty data volume). It mirrors what the embedded
# deployment does after start (infra/postgres.py): the Airflow metadata database, closed
# to everyone but the platform user, and the dashboard's read-only login role.
#
# Names default to the Settings defaults (lakehouse.settings); passwords come from .env.
# Values reach SQL as psql variables (:"ident" / :'literal'), so they are quoted by psql.
set -eo pipefail

: "${LAKEHOUSE_DASHBOARD_PASSWORD:?LAKEHOUSE_DASHBOARD_PASSWORD is not set: set it in .env}"

psql -v ON_ERROR_STOP=1 --no-psqlrc \
    --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set owner="$POSTGRES_USER" \
    --set lakehouse_db="$POSTGRES_DB" \
    --set airflow_db="${LAKEHOUSE_AIRFLOW_DB:-airflow}" \
    --set reader="${LAKEHOUSE_DASHBOARD_USER:-dashboard_ro}" \
    --set reader_password="$LAKEHOUSE_DASHBOARD_PASSWORD" <<'SQL'
CREATE DATABASE :"airflow_db" OWNER :"owner";
-- Only the platform reads Airflow's metadata (it holds connections and variables).
REVOKE ALL ON DATABASE :"airflow_db" FROM PUBLIC;

CREATE ROLE :"reader" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'reader_password';
GRANT CONNECT ON DATABASE :"lakehouse_db" TO :"reader";

-- In the lakehouse database (this connection): the reader sees every table the platform
-- user creates, now and later, and can create nothing.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"reader";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"reader";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" GRANT SELECT ON TABLES TO :"reader";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" GRANT USAGE ON SCHEMAS TO :"reader";
SQL
