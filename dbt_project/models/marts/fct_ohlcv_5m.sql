{{ config(materialized='table') }}
{{ ohlcv('5 minutes') }}
