{# Per-symbol bars with returns, moving averages and volatility.
   From trades for the finest width; wider bars roll up the one-minute bars (a fraction of
   the rows), so the trades are scanned once per build, not once per width. #}
{% macro ohlcv(width, from_bars=none) %}
with bars as (
{%- if from_bars is none %}
    select
        symbol,
        time_bucket(interval '{{ width }}', event_time) as bar_start,
        arg_min(price, event_time) as open,
        max(price) as high,
        min(price) as low,
        arg_max(price, event_time) as close,
        sum(volume) as volume,
        sum(notional) / nullif(sum(volume), 0) as vwap,
        count(*) as trade_count,
        any_value(sector) as sector
    from {{ ref('stg_trades') }}
    group by 1, 2
{%- else %}
    select
        symbol,
        time_bucket(interval '{{ width }}', bar_start) as bar_start,
        arg_min(open, bar_start) as open,
        max(high) as high,
        min(low) as low,
        arg_max(close, bar_start) as close,
        sum(volume) as volume,
        sum(vwap * volume) / nullif(sum(volume), 0) as vwap,
        sum(trade_count) as trade_count,
        any_value(sector) as sector
    from {{ ref(from_bars) }}
    group by 1, 2
{%- endif %}
)

select
    symbol || '|' || strftime(bar_start, '%Y-%m-%dT%H:%M:%S') as bar_id,
    *,
    close / lag(close) over per_symbol - 1 as return,
    avg(close) over (per_symbol rows between 19 preceding and current row) as ma_20,
    avg(close) over (per_symbol rows between 49 preceding and current row) as ma_50,
    stddev_samp(close) over (per_symbol rows between 19 preceding and current row) as volatility_20
from bars
window per_symbol as (partition by symbol order by bar_start)
{% endmacro %}
