{# Per-symbol bars with returns, moving averages and volatility.
   From trades for the finest width; wider bars roll up the one-minute bars (a fraction of
   the rows), so the trades are scanned once per build, not once per width.

   Open is the price of the first trade by (event_time, trade_id), close of the last, as in
   the Postgres serving bars; trades can share an event time, so the trade id breaks ties.
   A wider bar opens with its first one-minute bar and closes with its last.

   Incremental (the one-minute model): only trades from `bars_lookback` before the newest
   stored bar are read (a literal bound, so the Delta scan skips older files), their bars
   recomputed and merged on bar_id. Each symbol's last 49 stored bars before that bound are
   read back as context, so returns and moving windows equal a full build's. Trades arriving
   later than the lookback, or a replay that changed older rows, need
   `dbt build --full-refresh`. #}
{% macro ohlcv(width, from_bars=none) %}
{%- set incremental = from_bars is none and is_incremental() %}
{%- if incremental %}
    {%- set bound = run_query(
        "select strftime(coalesce(max(bar_start), timestamp '1970-01-01') - interval '"
        ~ var('bars_lookback', '10 minutes') ~ "', '%Y-%m-%d %H:%M:%S') from " ~ this
    ).columns[0].values()[0] %}
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
        last(sector order by event_time, trade_id) filter (where sector is not null) as sector
    from {{ ref('stg_trades') }}
    {%- if incremental %}
    where event_date >= cast(timestamp '{{ bound }}' as date)
      and event_time >= timestamp '{{ bound }}'
    {%- endif %}
    group by 1, 2
    {%- if incremental %}
    union all
    select symbol, bar_start, open, high, low, close, volume, vwap, trade_count, sector
    from {{ this }}
    where bar_start < timestamp '{{ bound }}'
    qualify row_number() over (partition by symbol order by bar_start desc) <= 49
    {%- endif %}
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
        arg_max(sector, bar_start) as sector
    from {{ ref(from_bars) }}
    group by 1, 2
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
        ) as volatility_20
    from bars
    window per_symbol as (partition by symbol order by bar_start)
)

select * from measured
{%- if incremental %}
where bar_start >= timestamp '{{ bound }}'
{%- endif %}
{% endmacro %}
