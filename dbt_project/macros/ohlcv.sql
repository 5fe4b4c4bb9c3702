{# Per-symbol bars with returns, moving averages and volatility.
   From trades for the finest width; wider bars roll up the one-minute bars (a fraction of
   the rows), so the trades are scanned once per build, not once per width.

   Open is the price of the first trade by (event_time, trade_id), close of the last, as in
   the Postgres serving bars; trades can share an event time, so the trade id breaks ties.
   A wider bar opens with its first one-minute bar and closes with its last.

   Every model is incremental (see build_scope.sql): the one-minute model reads only trades
   from `lake_lookback` before its newest stored bar (a literal bound, so the Delta scan
   skips older partitions); a wider one rebuilds the buckets holding the one-minute bars
   rewritten since its own last build. Each symbol's last 49 stored bars before the bound
   are read back as context, so returns and moving windows equal a full build's. Trades
   arriving later than the lookback, or a replay that changed older rows, need
   `dbt build --full-refresh`. #}
{% macro ohlcv(width, from_bars=none) %}
{%- set incremental = is_incremental() %}
{%- set unchanged = false %}
{%- if not incremental %}
    {%- set bound = none %}
{%- elif from_bars is none %}
    {%- set bound = read_since(this, 'bar_start') %}
{%- else %}
    {%- set bound = rebuilt_since(ref(from_bars), width) %}
    {#- Nothing rewritten upstream since this model's last build: nothing to rebuild. #}
    {%- set unchanged = bound is none %}
{%- endif %}
with bars as (
{%- if from_bars is none %}
    select
        symbol,
        time_bucket(interval '{{ width }}', event_time) as bar_start,
        first(price order by event_time, trade_id) as open,
        max(price) as high,
        min(price) as low,
        last(price order by event_time, trade_id) as close,
        sum(volume) as volume,
        sum(notional) / nullif(sum(volume), 0) as vwap,
        count(*) as trade_count,
        last(sector order by event_time, trade_id) filter (where sector is not null) as sector,
        last(company_name order by event_time, trade_id)
            filter (where company_name is not null) as company_name,
        min(event_time) as first_trade_at,
        max(event_time) as last_trade_at
    from {{ ref('stg_trades') }}
    {%- if bound %}
    where event_date >= cast({{ bound }} as date)
      and event_time >= {{ bound }}
    {%- endif %}
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
        last(sector order by bar_start) filter (where sector is not null) as sector,
        last(company_name order by bar_start) filter (where company_name is not null)
            as company_name,
        min(first_trade_at) as first_trade_at,
        max(last_trade_at) as last_trade_at
    from {{ ref(from_bars) }}
    {%- if unchanged %}
    where false
    {%- elif bound %}
    where bar_start >= {{ bound }}
    {%- endif %}
    group by 1, 2
{%- endif %}
    {%- if bound %}
    union all
    select
        symbol, bar_start, open, high, low, close, volume, vwap, trade_count, sector,
        company_name, first_trade_at, last_trade_at
    from {{ this }}
    where bar_start < {{ bound }}
    qualify row_number() over (partition by symbol order by bar_start desc) <= 49
    {%- endif %}
),

measured as (
    select
        symbol || '|' || strftime(bar_start, '%Y-%m-%dT%H:%M:%S') as bar_id,
        *,
        close / lag(close) over per_symbol - 1 as return,
        avg(close) over (per_symbol rows between 19 preceding and current row) as ma_20,
        avg(close) over (per_symbol rows between 49 preceding and current row) as ma_50,
        stddev_samp(close) over (
            per_symbol rows between 19 preceding and current row
        ) as volatility_20,
        {{ built_at() }} as built_at
    from bars
    window per_symbol as (partition by symbol order by bar_start)
)

select * from measured
{%- if bound %}
where bar_start >= {{ bound }}
{%- endif %}
{% endmacro %}
