"""The layers as DESIGN.md draws them, read from the imports of every module under app/.

Dependencies flow one way: api/web -> http (what both share) -> services -> db; workers -> engine
and services; the engine imports nothing of the studio around it. Every import counts, the ones
inside functions too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "app"

# (importing layer, imported layer): what that layer must never import.
FORBIDDEN: dict[str, set[str]] = {
    "app.engine": {"app.api", "app.web", "app.http", "app.services", "app.db", "app.workers"},
    "app.services": {"app.api", "app.web", "app.http", "app.schemas", "app.workers"},
    "app.http": {"app.api", "app.web"},
    "app.api": {"app.web"},
    "app.web": {"app.api"},
}

# Imports that break a rule for a while, each with the TODO that removes it: (importer, imported).
# It is empty, and a test fails on an entry whose import is gone; add one only with the change
# that removes it in flight.
ALLOWED: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> Iterator[str]:
    """Every ``app`` module ``path`` imports, resolved to absolute names (``from app import x`` -> app.x)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            # ``from app.services import generations`` imports the module app.services.generations.
            yield from (f"{base}.{alias.name}" for alias in node.names)


def layer(module: str) -> str:
    """The package a module belongs to (app.services, app.web...), or the top-level module itself."""
    return ".".join(module.split(".")[:2])


def app_imports() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in APP.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {target for target in imported_modules(path) if target in modules}
    return graph


GRAPH = app_imports()


def test_the_import_reader_sees_the_known_imports() -> None:
    # Guards the test itself: a reader that resolves nothing would pass every rule below.
    assert "app.services.errors" in GRAPH["app.services.generations"]
    assert "app.deps" in GRAPH["app.api.generations"]
    assert "app.services.generations" in GRAPH["app.api.generations"]
    assert len(GRAPH) > 60


@pytest.mark.parametrize("importer", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(importer: str) -> None:
    broken = [
        f"{source} imports {target}"
        for source, targets in sorted(GRAPH.items())
        if layer(source) == importer
        for target in sorted(targets)
        if layer(target) in FORBIDDEN[importer] and (source, target) not in ALLOWED
    ]
    assert not broken, f"{importer} must not import {sorted(FORBIDDEN[importer])}:\n" + "\n".join(broken)


def test_every_allowed_exception_is_still_needed() -> None:
    stale = [f"{source} -> {target}" for source, target in ALLOWED if target not in GRAPH.get(source, set())]
    assert not stale, "remove these from ALLOWED, the imports are gone:\n" + "\n".join(stale)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_two_packages_import_each_other() -> None:
    between: dict[str, set[str]] = defaultdict(set)
    for source, targets in GRAPH.items():
        for target in targets:
            if layer(source) != layer(target) and (source, target) not in ALLOWED:
                between[layer(source)].add(layer(target))
    assert _cycles(between) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"app.api": {"app.web"}, "app.web": {"app.http"}, "app.http": {"app.api"}}) == [
        ["app.api", "app.http", "app.web"]
    ]


# The catalog, the family table and the LoRA and upscaler files' headers are read without torch
# (tests/test_light_imports.py checks that); everything else in the engine loads torch and runs only in workers.
# ControlNet folders are read from their configs, and control maps computed with OpenCV, without torch too.
WEB_SIDE_ENGINE = {
    "app.engine.catalog",
    "app.engine.families",
    "app.engine.loras",
    "app.engine.upscalers",
    "app.engine.controlnets",
    "app.engine.control_maps",
}


@pytest.mark.parametrize("importer", ["app.api", "app.web", "app.http", "app.services", "app.main", "app.deps"])
def test_the_web_side_reads_only_the_engine_catalog(importer: str) -> None:
    broken = [
        f"{source} imports {target}"
        for source, targets in sorted(GRAPH.items())
        if layer(source) == importer
        for target in sorted(targets)
        if layer(target) == "app.engine" and target != "app.engine" and target not in WEB_SIDE_ENGINE
    ]
    assert not broken, "only the workers run the engine; the web side reads its catalog:\n" + "\n".join(broken)
