"""The web activity pipeline's queries: bronze (Kafka -> Delta, Kafka), page views, active
users and sessions (Delta -> Postgres). Parameters (--param activity.NAME=VALUE):
`watermark` ('2 minutes'), `session_timeout` ('15 minutes') and `buckets`, the user hash
buckets of the session operator (16); defaults in lakehouse/pipelines/activity.
"""

from __future__ import annotations

from lakehouse.durations import duration_ms
from spark.driver import DriverContext, Starter


class ActivityQueries:
    def __init__(self, params: dict[str, str]) -> None:
        unknown = set(params) - {"watermark", "session_timeout", "buckets"}
        if unknown:
            raise ValueError(
                f"the activity pipeline has no parameter {', '.join(sorted(unknown))} "
                "(it takes watermark, session_timeout and buckets)"
            )
        self.watermark = params.get("watermark", "2 minutes")
        duration_ms(self.watermark, "activity.watermark")
        self.session_timeout_ms = duration_ms(
            params.get("session_timeout", "15 minutes"), "activity.session_timeout"
        )
        buckets = params.get("buckets", "16")
        self.buckets = int(buckets) if buckets.isdigit() else 0
        if self.buckets < 1:
            raise ValueError(f"activity.buckets must be a whole number >= 1, not {buckets!r}")

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
