{{ config(materialized='table') }}
-- Per symbol over its latest trading day: first open, last close, change.
with latest as (
    select * from {{ ref('fct_symbol_daily') }}
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
