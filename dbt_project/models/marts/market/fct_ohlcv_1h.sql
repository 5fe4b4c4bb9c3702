-- Incremental: each build rolls up only the one-minute bars rewritten since its last one.
{{ config(
    materialized='incremental', unique_key='bar_id', incremental_strategy='delete+insert',
    on_schema_change='append_new_columns'
) }}
{{ ohlcv('1 hour', from_bars='fct_ohlcv_1m') }}
