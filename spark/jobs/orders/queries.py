"""The orders pipeline's queries: bronze (Kafka -> Delta) and matching (Delta -> Delta,
Postgres, MongoDB). Parameters (--param orders.NAME=VALUE): `watermark`, `order_timeout`
(an unmatched order expires once the watermark passes its first event plus this) and
`buckets` (the order hash buckets of the matching operator); their defaults are declared in
lakehouse/pipelines/orders.
"""

from __future__ import annotations

from lakehouse.params import duration_ms, refuse_unknown, whole_number
from lakehouse.pipelines.orders import (
    BRONZE_QUERY,
    DEFAULT_PARAMS,
    EVENT,
    EVENTS_TABLE,
    ORDERS_TOPIC,
    PAYMENTS_TOPIC,
    QUARANTINE_TABLE,
)
from spark.driver import DriverContext, Starter
from spark.event_bronze import EventBronze

BRONZE = EventBronze(
    EVENT, BRONZE_QUERY, (ORDERS_TOPIC, PAYMENTS_TOPIC), EVENTS_TABLE, QUARANTINE_TABLE
)


class OrdersQueries:
    def __init__(self, params: dict[str, str]) -> None:
        defaults = dict(DEFAULT_PARAMS)  # the driver folds them in; a direct caller may not
        refuse_unknown("orders", params, tuple(defaults))
        params = {**defaults, **params}
        self.watermark = params["watermark"]
        duration_ms(self.watermark, "orders.watermark")
        self.timeout_ms = duration_ms(params["order_timeout"], "orders.order_timeout")
        self.buckets = whole_number(params["buckets"], "orders.buckets")

    def prepare(self, ctx: DriverContext) -> None:
        from lakehouse.migrations import upgrade_layout
        from spark.jobs.orders import matching

        upgrade_layout(ctx.settings, ctx.layout)  # order_status and the sink ledger
        BRONZE.ensure_tables(ctx.spark, ctx.layout)
        matching.ensure_tables(ctx.spark, ctx.layout)

    def starters(self, ctx: DriverContext) -> list[Starter]:
        from spark.jobs.orders import matching

        common = {"trigger": ctx.trigger, "watermark": self.watermark}
        spark, settings, layout = ctx.spark, ctx.settings, ctx.layout
        # Matching reads bronze's table: a drain runs bronze first.
        return [
            lambda: BRONZE.start(spark, settings, layout, max_offsets=ctx.max_offsets, **common),
            lambda: matching.start(
                spark,
                settings,
                layout,
                timeout_ms=self.timeout_ms,
                buckets=self.buckets,
                **common,
            ),
        ]
