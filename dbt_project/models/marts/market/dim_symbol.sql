{{ config(materialized='table') }}
-- One row per traded symbol, with its latest known company data (ties by trade id, as the
-- bars): the small side the marts' relationship tests point at (a relationship to
-- stg_trades would rescan every trade).
select
    symbol,
    last(company_name order by event_time, trade_id)
        filter (where company_name is not null) as company_name,
    last(sector order by event_time, trade_id) filter (where sector is not null) as sector,
    min(event_time) as first_trade_at,
    max(event_time) as last_trade_at,
    count(*) as trades
from {{ ref('stg_trades') }}
group by 1
