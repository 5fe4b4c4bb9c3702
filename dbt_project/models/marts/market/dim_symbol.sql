{{ config(materialized='table') }}
-- One row per traded symbol, with its latest known company data: the small side the marts'
-- relationship tests point at. Built from the daily rollup (a row per symbol and day), so
-- its cost follows the number of symbols and days, not of trades.
select
    symbol,
    last(company_name order by day) filter (where company_name is not null) as company_name,
    last(sector order by day) filter (where sector is not null) as sector,
    min(first_trade_at) as first_trade_at,
    max(last_trade_at) as last_trade_at,
    sum(trades) as trades
from {{ ref('fct_symbol_daily') }}
group by 1
