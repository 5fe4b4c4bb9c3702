"""The registry: every pipeline's declaration, and what follows from them (streaming jobs,
tables, topics, serving specs). Supervision, maintenance, the sync, the DAGs and the CLI
read it; adding a pipeline adds a declaration, not platform code.

The platform's registry is `lakehouse.pipelines:REGISTRY`. The setting `registry`
(LAKEHOUSE_REGISTRY="module:attribute") points every part of the platform at another one,
e.g. a test's registry with an extra pipeline.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from lakehouse.kit import Pipeline, ServingSpec, StreamJob, Table, Topic, resolve
from lakehouse.settings import Settings

ONE_DRIVER_JOB = "streams"  # the job hosting every pipeline when settings say one driver


class RegistryError(ValueError):
    pass


@dataclass(frozen=True)
class Registry:
    pipelines: tuple[Pipeline, ...]

    def __post_init__(self) -> None:
        for what, names in (
            ("pipeline", [p.name for p in self.pipelines]),
            ("table", [t.name for p in self.pipelines for t in p.tables]),
            ("topic", [t.name for p in self.pipelines for t in p.topics]),
            ("query", [q for p in self.pipelines for q in p.all_queries]),
        ):
            repeated = sorted(name for name, n in Counter(names).items() if n > 1)
            if repeated:
                raise RegistryError(f"{what} declared twice: {', '.join(repeated)}")

    def in_one_driver(self, job: str = ONE_DRIVER_JOB) -> Registry:
        """The same pipelines, all hosted by one streaming job."""
        return Registry(tuple(replace(p, job=job) for p in self.pipelines))

    def pipeline(self, name: str) -> Pipeline:
        for pipeline in self.pipelines:
            if pipeline.name == name:
                return pipeline
        raise RegistryError(f"no pipeline {name!r}; registered: {', '.join(self.names)}")

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.pipelines]

    @cached_property
    def jobs(self) -> dict[str, StreamJob]:
        by_job: dict[str, list[Pipeline]] = {}
        for pipeline in self.pipelines:
            by_job.setdefault(pipeline.job, []).append(pipeline)
        return {name: StreamJob(name, tuple(hosted)) for name, hosted in by_job.items()}

    def job(self, name: str) -> StreamJob:
        if name not in self.jobs:
            raise RegistryError(
                f"no streaming job {name!r}; registered: {', '.join(sorted(self.jobs))}"
            )
        return self.jobs[name]

    @cached_property
    def tables(self) -> dict[str, Table]:
        return {t.name: t for p in self.pipelines for t in p.tables}

    def table(self, name: str) -> Table:
        if name not in self.tables:
            raise RegistryError(f"no table {name!r}; registered: {', '.join(self.tables)}")
        return self.tables[name]

    @property
    def topics(self) -> tuple[Topic, ...]:
        return tuple(t for p in self.pipelines for t in p.topics)

    def owner(self, table: str) -> tuple[Pipeline, StreamJob]:
        """The pipeline that declares the table and the job whose driver writes it."""
        for pipeline in self.pipelines:
            if any(t.name == table for t in pipeline.tables):
                return pipeline, self.jobs[pipeline.job]
        raise RegistryError(f"no table {table!r}; registered: {', '.join(self.tables)}")

    @property
    def replayable(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tables.values() if t.replay)

    @property
    def serving(self) -> list[tuple[Pipeline, ServingSpec]]:
        return [(p, spec) for p in self.pipelines for spec in p.serving]

    def input_folders(self, settings: Settings) -> dict[str, str]:
        """Pipeline name -> the folder (path or s3a:// prefix) it watches."""
        return {p.name: getattr(settings, p.input_folder) for p in self.pipelines if p.input_folder}

    @property
    def migration_locations(self) -> tuple[Path, ...]:
        return tuple(p.migrations for p in self.pipelines if p.migrations)


def load_registry(settings: Settings | None = None) -> Registry:
    """The registry the settings name (the platform's unless LAKEHOUSE_REGISTRY says)."""
    if settings is None:
        from lakehouse.settings import load_settings

        settings = load_settings()
    try:
        registry = resolve(settings.registry, "REGISTRY")
    except (ImportError, AttributeError) as error:
        raise RegistryError(
            f"registry {settings.registry!r} cannot be loaded ({error}): set "
            "LAKEHOUSE_REGISTRY to 'module:attribute' of a Registry"
        ) from None
    if not isinstance(registry, Registry):
        raise RegistryError(f"{settings.registry!r} is not a Registry")
    return registry.in_one_driver() if settings.streams_in_one_driver else registry
