{{ config(materialized='table') }}
{{ ohlcv('1 hour') }}
