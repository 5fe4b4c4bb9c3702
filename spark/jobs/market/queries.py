"""The market pipeline's queries: bronze (Kafka -> Delta) and silver enrichment (which also
keeps the live one-minute bars in Postgres).

Both run in the driver of the job the registry names (lakehouse/pipelines/market.py), so
each Delta table has exactly one writer. Parameters (--param market.NAME=VALUE):
`buckets`, the symbol hash buckets of the stateful step (16), and `watermark`, how late a
reference or trade may be ('10 seconds').
"""

from __future__ import annotations

from lakehouse.params import refuse_unknown, whole_number
from spark.driver import DriverContext, Starter


class MarketQueries:
    def __init__(self, params: dict[str, str]) -> None:
        from spark.jobs.market.trade_enrichment.job import (
            DEFAULT_BUCKETS,
            DEFAULT_WATERMARK,
            watermark_delay_ms,
        )

        refuse_unknown("market", params, ("buckets", "watermark"))
        self.buckets = whole_number(params.get("buckets", str(DEFAULT_BUCKETS)), "market.buckets")
        self.watermark = params.get("watermark", DEFAULT_WATERMARK)
        watermark_delay_ms(self.watermark)  # ValueError in one sentence

    def prepare(self, ctx: DriverContext) -> None:
        from lakehouse.migrations import upgrade_layout
        from spark.jobs.market import bronze

        bronze.ensure_tables(ctx.spark, ctx.layout)
        upgrade_layout(ctx.settings, ctx.layout)  # the live bars and the sink ledger

    def starters(self, ctx: DriverContext) -> list[Starter]:
        from spark.jobs.market import bronze
        from spark.jobs.market.trade_enrichment import job as enrichment

        def start_bronze():
            return bronze.start(
                ctx.spark,
                ctx.settings,
                ctx.layout,
                trigger=ctx.trigger,
                max_offsets=ctx.max_offsets,
            )

        def start_silver():
            return enrichment.start(
                ctx.spark,
                ctx.settings,
                ctx.layout,
                trigger=ctx.trigger,
                buckets=self.buckets,
                watermark=self.watermark,
            )

        # Silver reads bronze: a drain runs bronze first so silver sees all of it.
        return [start_bronze, start_silver]
