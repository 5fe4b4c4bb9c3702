"""The layering rules, checked on the import graph (every import statement, also those
inside functions): the core imports nothing above it, the platform services under
lakehouse/ never import a pipeline's Spark code, a producer or the dashboard, and DAGs
never import Spark jobs. docs/architecture.md draws the layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lakehouse.settings import PROJECT_ROOT

CORE = {
    "lakehouse.settings",
    "lakehouse.kit",
    "lakehouse.contracts",
    "lakehouse.registry",
    "lakehouse.layout",
    "lakehouse.process",
    "lakehouse.java",
    "lakehouse.drivers",
    "lakehouse.migrations",
}
PROJECT_PACKAGES = ("lakehouse", "control", "infra", "spark", "producers", "dashboard", "dags")


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module the file imports, as written (absolute imports only: the project uses
    no relative ones)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def project_imports(folder: str) -> dict[str, set[str]]:
    return {
        module_name(path): {m for m in imports(path) if m.split(".")[0] in PROJECT_PACKAGES}
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py"))
    }


def violations(graph: dict[str, set[str]], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        for target in targets
        if any(target == f or target.startswith(f + ".") for f in forbidden)
    )


def test_the_graph_is_read():
    # The checks below mean something only if imports are found at all.
    graph = project_imports("lakehouse")
    assert "lakehouse.layout" in graph and "lakehouse.registry" in graph["lakehouse.layout"]
    assert "spark.jobs.market.queries" in project_imports("spark")


def test_lakehouse_imports_no_pipeline_spark_code_producer_dashboard_or_launcher():
    graph = project_imports("lakehouse")
    forbidden = ("spark.jobs", "producers", "dashboard", "control", "infra")
    assert violations(graph, forbidden) == []


def test_the_core_imports_only_the_core():
    graph = {m: t for m, t in project_imports("lakehouse").items() if m in CORE}
    assert set(graph) == CORE, "a core module was renamed: update CORE"
    outside = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        for target in targets
        if not any(target == c or target.startswith(c + ".") for c in CORE)
    )
    assert outside == []


def test_dags_import_no_spark_job():
    assert violations(project_imports("dags"), ("spark",)) == []


def test_spark_benches_do_not_import_the_dashboard():
    assert violations(project_imports("spark"), ("dashboard", "control", "producers")) == []


@pytest.mark.parametrize("folder", ["infra", "producers", "dashboard"])
def test_middle_layers_do_not_import_the_launcher(folder):
    assert violations(project_imports(folder), ("control",)) == []
