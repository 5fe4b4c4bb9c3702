-- Incremental: each build reads only the trades near the newest bar (see macros/ohlcv.sql).
{{ config(
    materialized='incremental', unique_key='bar_id', incremental_strategy='delete+insert',
    on_schema_change='append_new_columns'
) }}
{{ ohlcv('1 minute') }}
