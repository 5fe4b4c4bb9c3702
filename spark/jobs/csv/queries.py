"""The CSV drops pipeline's one query: the input folder -> Postgres. Parameter
(--param csv.NAME=VALUE): `files_per_batch`, the most files one micro-batch takes (its
default is declared in lakehouse/pipelines/csv)."""

from __future__ import annotations

from lakehouse.params import refuse_unknown, whole_number
from lakehouse.pipelines.csv import DEFAULT_PARAMS
from spark.driver import DriverContext, Starter


class CsvQueries:
    def __init__(self, params: dict[str, str]) -> None:
        defaults = dict(DEFAULT_PARAMS)
        refuse_unknown("csv", params, tuple(defaults))
        params = {**defaults, **params}
        self.files_per_batch = whole_number(params["files_per_batch"], "csv.files_per_batch")

    def prepare(self, ctx: DriverContext) -> None:
        from lakehouse.migrations import upgrade_layout

        upgrade_layout(ctx.settings, ctx.layout)  # its tables, views and the sink ledger

    def starters(self, ctx: DriverContext) -> list[Starter]:
        from spark.jobs.csv import load

        return [
            lambda: load.start(
                ctx.spark,
                ctx.settings,
                ctx.layout,
                trigger=ctx.trigger,
                files_per_batch=self.files_per_batch,
            )
        ]
