{{ config(materialized='table') }}
{{ ohlcv('5 minutes', from_bars='fct_ohlcv_1m') }}
