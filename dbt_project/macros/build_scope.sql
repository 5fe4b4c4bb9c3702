{# What a scheduled build reads, writes and tests: the recent end of the lake, not all of it.

   The lake-reading incremental models (the one-minute bars) re-read the lake from
   `lake_lookback` before their newest stored row. The models built from them rebuild what
   their upstream rewrote since their own last build (`built_at`, the build's start time,
   stamped on every row a build writes). A scheduled `dbt build` then tests only that:

   - `where: "__built_this_run__"` on a model's tests keeps the rows this build wrote;
   - `__read_since(<model>.<column>)__` in a `where` on a lake view's tests stands for the
     bound that model reads the lake from (tests of a view run before the models below it,
     so they see the same bound the model will use).

   `dbt build --full-refresh` rebuilds and tests everything; so does `dbt test` alone. #}

{% macro built_at() -%}
    timestamp '{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}'
{%- endmacro %}

{% macro epoch() -%}
    timestamp '1970-01-01 00:00:00'
{%- endmacro %}

{% macro stored_relation(model) %}
    {#- The relation of a model (its name, or `this`), none before its first build. -#}
    {%- if model is string -%}
        {{ return(adapter.get_relation(database=target.database, schema=target.schema, identifier=model)) }}
    {%- endif -%}
    {{ return(load_relation(model)) }}
{% endmacro %}

{% macro has_build_stamp(model) %}
    {%- set relation = stored_relation(model) -%}
    {%- if relation is none -%}{{ return(false) }}{%- endif -%}
    {%- set names = adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list -%}
    {{ return('built_at' in names) }}
{% endmacro %}

{% macro should_full_refresh() %}
    {#- dbt's rule (the model's full_refresh config, else --full-refresh), and one more: an
        incremental model stored before its rows carried `built_at` is rebuilt whole once,
        since what the next builds rewrite is found by that column. -#}
    {%- set configured = config.get('full_refresh') -%}
    {%- if configured is none -%}{%- set configured = flags.FULL_REFRESH -%}{%- endif -%}
    {%- if configured or not execute or model.config.materialized != 'incremental' -%}
        {{ return(configured) }}
    {%- endif -%}
    {{ return(stored_relation(this) is not none and not has_build_stamp(this)) }}
{% endmacro %}

{% macro scalar(sql) %}
    {%- set value = run_query(sql).columns[0].values()[0] -%}
    {{ return(value) }}
{% endmacro %}

{% macro read_since(model, column) %}
    {#- The timestamp literal a lake-reading incremental model reads from: `lake_lookback`
        before its newest `column`, the epoch when it rebuilds whole. -#}
    {%- set relation = stored_relation(model) if execute else none -%}
    {%- if relation is none or flags.FULL_REFRESH -%}{{ return(epoch()) }}{%- endif -%}
    {%- set bound = scalar(
        "select strftime(coalesce(max(" ~ column ~ "), " ~ epoch() ~ ") - interval '"
        ~ var('lake_lookback') ~ "', '%Y-%m-%d %H:%M:%S') from " ~ relation
    ) -%}
    {{ return("timestamp '" ~ bound ~ "'") }}
{% endmacro %}

{% macro rebuilt_since(upstream, width=none) %}
    {#- The timestamp literal from which a model derived from `upstream` is rebuilt: the
        earliest bar_start upstream rewrote after this model's last build (bucketed to
        `width`), the epoch when it rebuilds whole, none when nothing changed. -#}
    {%- if not is_incremental() -%}{{ return(epoch()) }}{%- endif -%}
    {%- set since = scalar(
        "select strftime(" ~ ("time_bucket(interval '" ~ width ~ "', min(bar_start))" if width else "min(bar_start)")
        ~ ", '%Y-%m-%d %H:%M:%S') from " ~ upstream ~ " where built_at > (select coalesce(max(built_at), "
        ~ epoch() ~ ") from " ~ this ~ ")"
    ) -%}
    {{ return(none if since is none else "timestamp '" ~ since ~ "'") }}
{% endmacro %}

{% macro duckdb__get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if not where -%}{{ return(relation) }}{%- endif -%}
    {%- set scoped = flags.WHICH == 'build' and not flags.FULL_REFRESH -%}
    {%- if '__built_this_run__' in where or '__read_since(' in where -%}
        {%- if not scoped -%}{{ return(relation) }}{%- endif -%}
        {%- set filter = namespace(sql=where | replace('__built_this_run__', 'built_at = ' ~ built_at())) -%}
        {%- for model, column in modules.re.findall('__read_since\\((\\w+)\\.(\\w+)\\)__', where) -%}
            {%- set token = '__read_since(' ~ model ~ '.' ~ column ~ ')__' -%}
            {%- set filter.sql = filter.sql | replace(token, read_since(model, column)) -%}
        {%- endfor -%}
        {%- set where = filter.sql -%}
    {%- endif -%}
    {{ return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') dbt_subquery') }}
{%- endmacro %}
