{{ config(materialized='table') }}
-- One row per traded symbol, with its latest company data: the small side the marts'
-- relationship tests point at (a relationship to stg_trades would rescan every trade).
select
    symbol,
    arg_max(company_name, event_time) as company_name,
    arg_max(sector, event_time) as sector,
    min(event_time) as first_trade_at,
    max(event_time) as last_trade_at,
    count(*) as trades
from {{ ref('stg_trades') }}
group by 1
