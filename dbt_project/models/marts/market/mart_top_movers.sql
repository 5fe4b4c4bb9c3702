{{ config(materialized='table') }}
-- Per symbol over its latest trading day: first open, last close, change.
with days as (
    select
        symbol,
        cast(bar_start as date) as day,
        arg_min(open, bar_start) as day_open,
        arg_max(close, bar_start) as day_close,
        sum(volume) as volume
    from {{ ref('fct_ohlcv_1m') }}
    group by 1, 2
),

latest as (
    select * from days
    qualify row_number() over (partition by symbol order by day desc) = 1
)

select
    symbol,
    day,
    day_open,
    day_close,
    day_close / day_open - 1 as change,
    volume,
    rank() over (partition by day order by abs(day_close / day_open - 1) desc) as mover_rank
from latest
