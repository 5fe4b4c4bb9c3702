-- Per symbol and trading day (UTC): first and last price, volume, trades, and the company
-- data of its last trade. Rolled up from the one-minute bars, so dim_symbol and the top
-- movers read a row per symbol and day instead of every trade or bar. Incremental: each
-- build recomputes the days whose one-minute bars were rewritten since its last one.
{{ config(
    materialized='incremental', unique_key='symbol_day_id', incremental_strategy='delete+insert',
    on_schema_change='append_new_columns'
) }}
{%- set since = rebuilt_since(ref('fct_ohlcv_1m'), '1 day') if is_incremental() else none %}
select
    symbol || '|' || strftime(cast(bar_start as date), '%Y-%m-%d') as symbol_day_id,
    symbol,
    cast(bar_start as date) as day,
    arg_min(open, bar_start) as day_open,
    arg_max(close, bar_start) as day_close,
    sum(volume) as volume,
    sum(trade_count) as trades,
    min(first_trade_at) as first_trade_at,
    max(last_trade_at) as last_trade_at,
    last(company_name order by bar_start) filter (where company_name is not null) as company_name,
    last(sector order by bar_start) filter (where sector is not null) as sector,
    {{ built_at() }} as built_at
from {{ ref('fct_ohlcv_1m') }}
{%- if is_incremental() %}
where {{ "bar_start >= " ~ since if since else "false" }}
{%- endif %}
group by symbol, cast(bar_start as date)
