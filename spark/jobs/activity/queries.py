"""The web activity pipeline's queries: bronze (Kafka -> Delta, Kafka), page views, active
users and sessions (Delta -> Postgres). Parameters (--param activity.NAME=VALUE):
`watermark`, `session_timeout` and `buckets` (the user hash buckets of the session
operator); their defaults are declared in lakehouse/pipelines/activity.
"""

from __future__ import annotations

from lakehouse.params import duration_ms, refuse_unknown, whole_number
from lakehouse.pipelines.activity import DEFAULT_PARAMS
from spark.driver import DriverContext, Starter


class ActivityQueries:
    def __init__(self, params: dict[str, str]) -> None:
        defaults = dict(DEFAULT_PARAMS)  # the driver folds them in; a direct caller may not
        refuse_unknown("activity", params, tuple(defaults))
        params = {**defaults, **params}
        self.watermark = params["watermark"]
        duration_ms(self.watermark, "activity.watermark")
        self.session_timeout_ms = duration_ms(params["session_timeout"], "activity.session_timeout")
        self.buckets = whole_number(params["buckets"], "activity.buckets")

    def prepare(self, ctx: DriverContext) -> None:
        from lakehouse.migrations import upgrade_layout
        from spark.jobs.activity import bronze

        upgrade_layout(ctx.settings, ctx.layout)  # its serving tables and the sink ledger
        bronze.ensure_tables(ctx.spark, ctx.layout)

    def starters(self, ctx: DriverContext) -> list[Starter]:
        from spark.jobs.activity import bronze, sessions, windows

        common = {"trigger": ctx.trigger, "watermark": self.watermark}
        spark, settings, layout = ctx.spark, ctx.settings, ctx.layout
        # The window and session queries read bronze's table: a drain runs bronze first.
        return [
            lambda: bronze.start(spark, settings, layout, max_offsets=ctx.max_offsets, **common),
            lambda: windows.start_page_views(spark, settings, layout, **common),
            lambda: windows.start_active_users(spark, settings, layout, **common),
            lambda: sessions.start(
                spark,
                settings,
                layout,
                timeout_ms=self.session_timeout_ms,
                buckets=self.buckets,
                **common,
            ),
        ]
