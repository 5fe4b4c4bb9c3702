{{ config(materialized='table') }}
{{ ohlcv('1 hour', from_bars='fct_ohlcv_1m') }}
