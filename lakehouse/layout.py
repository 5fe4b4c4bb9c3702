"""Where a pipeline's data lives for one namespace: topics, lake paths, checkpoints and the
serving schema.

The default namespace ('') is the platform's own. Tests and experiments use an isolated
namespace: suffixed topics and MongoDB collections, a lake prefix, checkpoints and a serving
schema of their own, so runs never see each other's data. A namespace is checked where it
enters (CLI, DAG params, drivers) and becomes part of topic names and SQL identifiers only
through here.
"""

from __future__ import annotations

import re
from pathlib import Path

from lakehouse.kit import Table
from lakehouse.registry import Registry, load_registry
from lakehouse.settings import Settings

NAMESPACE_PATTERN = re.compile(r"[a-z0-9][a-z0-9_]{0,39}")


class InvalidNamespace(ValueError):
    pass


def check_namespace(namespace: str) -> str:
    """The namespace, or InvalidNamespace saying what one may look like."""
    if namespace and not NAMESPACE_PATTERN.fullmatch(namespace):
        raise InvalidNamespace(
            f"namespace {namespace!r} is not valid: use 1 to 40 lower-case letters, digits "
            "or underscores, starting with a letter or digit"
        )
    return namespace


class Layout:
    def __init__(
        self,
        settings: Settings,
        namespace: str = "",
        registry: Registry | None = None,
        *,
        lake_root: str | None = None,  # another lake (benchmarks on local disk)
    ):
        self.namespace = check_namespace(namespace)
        self.registry = registry or load_registry(settings)
        if lake_root:
            self.lake_root = lake_root
            self.checkpoint_root = Path(lake_root) / "_checkpoints"
        elif namespace:
            self.lake_root = f"{settings.lake_uri}/isolated/{namespace}"
            self.checkpoint_root = settings.checkpoints_dir / "isolated" / namespace
        else:
            self.lake_root = settings.lake_uri
            self.checkpoint_root = settings.checkpoints_dir

    def __repr__(self) -> str:
        return f"Layout(namespace={self.namespace!r}, lake_root={self.lake_root!r})"

    def topic(self, name: str) -> str:
        return f"{name}-{self.namespace}" if self.namespace else name

    def table(self, table: str | Table) -> str:
        """The table's path (s3a:// as Spark names it)."""
        if isinstance(table, str):
            table = self.registry.table(table)
        return f"{self.lake_root}/{table.path}"

    def folder(self, base: str) -> str:
        """An input folder (a path or an s3a:// prefix) of this namespace: a sibling."""
        return f"{base.rstrip('/')}-{self.namespace}" if self.namespace else base

    def checkpoint(self, query: str) -> str:
        return str(self.checkpoint_root / query)

    @property
    def serving_schema(self) -> str:
        return f"serving_{self.namespace}" if self.namespace else "serving"

    def collection(self, name: str) -> str:
        """A MongoDB collection of the platform's database."""
        return f"{name}_{self.namespace}" if self.namespace else name

    def job_key(self, job: str) -> str:
        return self.registry.job(job).key(self.namespace)
