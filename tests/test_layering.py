"""The package layering of docs/ARCHITECTURE.md holds: imports point down, lazy ones too, and never in a cycle.

Layers, top to bottom: ``search.cli`` → ``search.tools`` → ``search`` core (with ``search.samplers``) →
``objectives`` → ``compression`` and ``devices`` (which do not import each other) → ``spaces``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("search", "spaces", "objectives", "compression", "devices")
RANK = {"search.cli": 5, "search.tools": 4, "search": 3, "objectives": 2, "compression": 1, "devices": 1, "spaces": 0}


def _layer(module: str) -> str:
    """The layer of a module path like ``search.tools.export`` (longest matching prefix)."""
    parts = module.split(".")
    for n in (2, 1):
        name = ".".join(parts[:n])
        if name in RANK:
            return name
    raise AssertionError(module)


def _imports(path: Path) -> list[str]:
    """Every jointnas module ``path`` imports, at any depth of the file (lazy and TYPE_CHECKING ones too)."""
    rel = path.relative_to(ROOT).with_suffix("")
    here = list(rel.parts[:-1]) if rel.name == "__init__" else list(rel.parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                found.append(".".join(base + ([node.module] if node.module else [])))
            elif node.module and node.module.startswith("jointnas."):
                found.append(node.module.removeprefix("jointnas."))
        elif isinstance(node, ast.Import):
            found += [a.name.removeprefix("jointnas.") for a in node.names if a.name.startswith("jointnas.")]
    return found


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path: Path) -> None:
    rel = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    mine = _layer(rel)
    for target in _imports(path):
        theirs = _layer(target)
        if theirs == mine:
            continue
        assert RANK[theirs] < RANK[mine], f"{rel} imports {target}: {mine} may not import {theirs}"
        assert {mine, theirs} != {"compression", "devices"}, f"{rel} imports {target}"


def test_no_import_cycle() -> None:
    """A cycle between modules (inside one layer too), found by a depth-first search over the import graph."""
    graph: dict[str, set[str]] = {}
    for path in _sources():
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        graph[name] = set(_imports(path))
    modules = set(graph)

    def resolve(target: str) -> str | None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    edges = {
        m: {t for t in map(resolve, deps) if t and t != m and not m.startswith(t + ".")} for m, deps in graph.items()
    }
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in sorted(edges[m]):
            assert state.get(t) != 1, f"import cycle: {' -> '.join([*stack, m, t])}"
            if t not in state:
                visit(t, [*stack, m])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [])
