select
    trade_id,
    symbol,
    event_time,
    event_date,
    price,
    volume,
    price * volume as notional,
    company_name,
    sector
from {{ source('lake', 'trades_enriched') }}
