"""What a pipeline declares: its topics, Delta tables, streaming job, serving tables and dbt
assets. A pipeline is its own files plus one `Pipeline` in the registry
(docs/architecture.md, "Anatomy of a pipeline").

Declarations are plain data: they name the Spark side by module path (`queries`,
`Table.replay`) so the core, the DAGs and the CLI read them without importing Spark.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import psycopg
    import pyarrow as pa

    from lakehouse.settings import Settings

WEEK_MS = 7 * 24 * 3600 * 1000


def resolve(reference: str, default_attribute: str = "") -> Any:
    """The object a "module:attribute" declaration names (the registry, a pipeline's
    queries or audit); `default_attribute` when the reference names only the module."""
    module_name, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module_name), attribute or default_attribute)


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int | None = None  # None: settings.kafka_default_partitions
    retention_ms: int = WEEK_MS


@dataclass(frozen=True)
class Table:
    """A Delta table of the lake. `writer` names the one streaming query allowed to commit
    to it: Delta on S3 is only safe with one writer per table (docs/architecture.md)."""

    name: str
    path: str  # relative to the layout's lake root
    writer: str
    partitions: tuple[str, ...] = ()
    # The Spark application (module) that rebuilds this table from its inputs, if any.
    replay: str | None = None


class AfterLoad(Protocol):
    """A serving table's extra step in the sync's transaction (the market's bars).

    `prepare` runs on another thread while the rows are COPYed in; `after_append` gets its
    result. `after_merge` runs after a staged merge, with the staging table's name.
    """

    def prepare(self, rows: pa.Table) -> Any: ...

    def after_append(self, conn: psycopg.Connection, schema: str, prepared: Any) -> None: ...

    def after_merge(
        self, conn: psycopg.Connection, schema: str, stage: str, deleted: int
    ) -> None: ...


@dataclass(frozen=True)
class ServingSpec:
    """A Delta table kept in step with a Postgres table of the serving schema.

    The Postgres tables come from the migrations (lakehouse/migrations/); the spec says what
    to copy: the source table, the key and the columns (the key first).
    """

    source: str  # a Table name
    target: str  # table in the serving schema
    key: tuple[str, ...]
    columns: tuple[str, ...]
    after_load: AfterLoad | None = None


@dataclass(frozen=True)
class Pipeline:
    name: str
    job: str  # the streaming driver hosting its queries (several pipelines may share one)
    queries: str  # "module:attribute" of its QueryFactory, imported by the driver only
    topics: tuple[Topic, ...] = ()
    tables: tuple[Table, ...] = ()
    serving: tuple[ServingSpec, ...] = ()
    dbt_select: str | None = None  # dbt selector of its models, e.g. "tag:market"
    # Driver parameters by default (--param name=value), e.g. the market's watermark.
    params: tuple[tuple[str, str], ...] = ()
    # Migrations of its serving tables kept outside lakehouse/migrations (a plug-in's).
    migrations: Path | None = None
    # Its streaming queries that write no Delta table (their sinks are Postgres or Kafka):
    # the supervisor watches their heartbeats too.
    other_queries: tuple[str, ...] = ()
    # The Settings property naming the folder it watches for files, if it reads one
    # (`lakehouse status` prints it, `lakehouse up` creates a local one).
    input_folder: str | None = None
    # "module:attribute" of its ChaosAudit (lakehouse/audit.py): how the chaos run feeds it
    # and reconciles its sinks. Imported by the chaos run only.
    audit: str | None = None
    # Seconds between its micro-batches when it keeps up; None: settings.stream_trigger_s.
    # A pipeline nobody watches by the second declares a longer one: each micro-batch has a
    # fixed cost of Spark jobs and Delta commits whatever it carries.
    trigger_s: float | None = None

    def trigger_interval(self, settings: Settings) -> float:
        """Its micro-batch interval on this platform (settings.stream_trigger_override_s, when
        set, wins over every declaration: the test platforms run every pipeline at 5 s)."""
        if settings.stream_trigger_override_s is not None:
            return settings.stream_trigger_override_s
        return settings.stream_trigger_s if self.trigger_s is None else self.trigger_s

    @property
    def queries_written(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.writer for t in self.tables))

    @property
    def all_queries(self) -> tuple[str, ...]:
        return (*self.queries_written, *self.other_queries)


@dataclass(frozen=True)
class StreamJob:
    """A long-running Spark driver that Airflow supervises: the queries of its pipelines."""

    name: str
    pipelines: tuple[Pipeline, ...] = field(default=())

    def key(self, namespace: str = "") -> str:
        """Identity of one running instance: the job, or the job on an isolated namespace."""
        return f"{self.name}@{namespace}" if namespace else self.name

    @property
    def queries(self) -> tuple[str, ...]:
        """Every streaming query its driver runs (the supervisor expects a heartbeat of each)."""
        return tuple(q for p in self.pipelines for q in p.all_queries)

    def tables(self) -> list[Table]:
        return [t for p in self.pipelines for t in p.tables]
