{% test ohlc_is_consistent(model) %}
-- A bar is wrong when low is above open or close, or high below them.
select *
from {{ model }}
where low > open or low > close or high < open or high < close or low > high
{% endtest %}
