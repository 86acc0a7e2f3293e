"""Imports point one way: `model` <- `offline` <- `bench` and `model` <- `service`; inside `offline`,
along the data flow (`OFFLINE_LAYERS`); and no two modules
import each other, directly or through others (imports inside functions count: they hide a cycle,
they do not remove it)."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "offline", "service", "bench", "tests")
# what each package may import from the project
ALLOWED = {
    "model": {"model"},
    "offline": {"model", "offline"},
    "service": {"model", "service"},
    "bench": {"model", "offline", "service", "bench"},
    "tests": set(PACKAGES),
}

# offline's folders in data-flow order: each may import only those before it. The modules directly in
# offline/ (pipeline, protocol) join the stages; the commands sit on top of everything.
OFFLINE_LAYERS = ("data", "features", "evaluation", "recommenders", "serving", "", "commands")


def offline_layer(module: str) -> int:
    """offline.data.split -> 0, offline.pipeline -> 5, offline.__main__ -> 6."""
    parts = module.split(".")
    if parts[-1] == "__main__":
        return OFFLINE_LAYERS.index("commands")
    if len(parts) == 2 and parts[1] not in OFFLINE_LAYERS:  # a module of offline/ itself
        return OFFLINE_LAYERS.index("")
    return OFFLINE_LAYERS.index(parts[1])


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def imported(path: Path) -> set[str]:
    """Every project module name `path` imports, anywhere in the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return {n for n in names if n.split(".")[0] in PACKAGES}


def import_graph() -> nx.DiGraph:
    files = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    modules = {module_name(p): p for p in files}

    def resolve(name: str) -> str | None:  # `offline.serving.export.export` -> `offline.serving.export`
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for target in filter(None, map(resolve, imported(path))):
            if target != name and not name.startswith(target + "."):  # a package's own __init__
                graph.add_edge(name, target)
    return graph


def test_the_graph_sees_the_project() -> None:
    graph = import_graph()
    assert graph.has_edge("offline.serving.export", "offline.recommenders.ranking_tables")  # a top-level import
    assert graph.has_edge("offline.recommenders.vecf", "offline.evaluation.rank_eval")  # one inside a function
    assert graph.has_edge("tests.service.test_tfserving", "bench.fake_tfserving")


@pytest.mark.parametrize("package", [p for p in PACKAGES if p != "tests"])
def test_imports_point_one_way(package: str) -> None:
    graph = import_graph()
    backwards = sorted(
        f"{a} -> {b}" for a, b in graph.edges if a.split(".")[0] == package and b.split(".")[0] not in ALLOWED[package]
    )
    assert not backwards, f"{package} may import only {sorted(ALLOWED[package])}: {backwards}"


def test_offline_follows_the_data_flow() -> None:
    graph = import_graph()
    offline = [(a, b) for a, b in graph.edges if a.startswith("offline.") and b.startswith("offline.")]
    assert offline, "the graph has no edges inside offline: the test would check nothing"
    backwards = sorted(f"{a} -> {b}" for a, b in offline if offline_layer(b) > offline_layer(a))
    assert not backwards, f"offline imports against the data flow {OFFLINE_LAYERS}: {backwards}"


def test_offline_layers_cover_every_module() -> None:
    for module in import_graph():
        if module.startswith("offline."):
            offline_layer(module)  # raises ValueError for a folder missing from OFFLINE_LAYERS


def test_no_import_cycles() -> None:
    graph = import_graph()
    cycles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert not cycles, f"modules that import each other: {cycles}"
