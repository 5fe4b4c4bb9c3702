-- Incremental: each build recomputes only the minutes whose one-minute bars were rewritten
-- since its last one (every symbol's bar of such a minute is read, not only the new ones).
{{ config(
    materialized='incremental', unique_key='sector_bar_id', incremental_strategy='delete+insert',
    on_schema_change='append_new_columns'
) }}
{%- set since = rebuilt_since(ref('fct_ohlcv_1m')) if is_incremental() else none %}
select
    sector || '|' || strftime(bar_start, '%Y-%m-%dT%H:%M:%S') as sector_bar_id,
    sector,
    bar_start,
    sum(volume) as volume,
    sum(vwap * volume) / nullif(sum(volume), 0) as vwap,
    sum(trade_count) as trade_count,
    count(*) as symbols,
    {{ built_at() }} as built_at
from {{ ref('fct_ohlcv_1m') }}
where sector is not null
{%- if is_incremental() %}
  and {{ "bar_start >= " ~ since if since else "false" }}
{%- endif %}
group by sector, bar_start
