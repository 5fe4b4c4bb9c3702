{{ config(materialized='table') }}
select
    sector,
    bar_start,
    sum(volume) as volume,
    sum(vwap * volume) / nullif(sum(volume), 0) as vwap,
    sum(trade_count) as trade_count,
    count(*) as symbols
from {{ ref('fct_ohlcv_1m') }}
where sector is not null
group by 1, 2
