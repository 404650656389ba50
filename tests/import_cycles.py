"""A package's imports, read statically, and the cycles among its modules.

Every import counts, at module level or inside a function, under `if TYPE_CHECKING:` too: an
import deferred into a function still ties the two modules together, it only hides the knot.
Shared by the import tests of `connector` and of the development tools (`outgrow_braze_dev`).
"""

from __future__ import annotations

import ast
from pathlib import Path

Graph = dict[str, set[str]]


def modules(root: Path, package: str) -> dict[str, Path]:
    """Return the package's modules by dotted name; `root` is the directory holding the package."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imported_names(path: Path, module: str) -> set[str]:
    """Return the dotted names a module imports, anywhere in it, relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            names.add(base)
            # `from package import name` may import the submodule `package.name`.
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def import_graph(root: Path, package: str) -> Graph:
    """Map each module of the package to the modules of the same package it imports."""
    known = modules(root, package)
    graph: Graph = {}
    for name, path in known.items():
        targets = {_owner(imported, known) for imported in imported_names(path, name)}
        graph[name] = {target for target in targets if target and target != name}
    return graph


def _owner(name: str, known: dict[str, Path]) -> str:
    """The module a dotted name lives in: itself, or the longest enclosing module known."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name


def find_cycles(root: Path, package: str) -> list[list[str]]:
    """Return each group of modules that import one another, directly or not; empty if none."""
    graph = import_graph(root, package)
    reach = {name: _reachable(graph, name) for name in graph}
    groups = {
        frozenset({name} | {other for other in reach[name] if name in reach[other]})
        for name in graph
        if name in reach[name]
    }
    return sorted(sorted(group) for group in groups)


def _reachable(graph: Graph, start: str) -> set[str]:
    """Return the modules `start` imports, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in graph.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen
