{% test no_nulls(model, columns) %}
-- not_null for several columns in one scan of the model (one per column over a 10M-row lake
-- view costs a full read of the Delta table each).
select *
from {{ model }}
where {% for column in columns %}{{ column }} is null{% if not loop.last %} or {% endif %}{% endfor %}
{% endtest %}
