"""No module of the connector or the development tools imports, however indirectly, a module
that imports it back.

Read from the source with `ast`, so every import counts: at module level, inside functions (the
lazy ones that hide a cycle at run time), and under `if TYPE_CHECKING`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

Graph = dict[str, set[str]]


def modules(package: Path) -> dict[str, Path]:
    """Dotted name -> file of every module of a package directory, `__init__` as the package."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that the module `name` at `path` imports anywhere in its body."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {_known_prefix(alias.name, known) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, name, is_package)
            for alias in node.names:
                # `from connector import config` names a module; `from connector.x import f`
                # names something in connector.x.
                found.add(_known_prefix(f"{base}.{alias.name}", known) or base)
    return {module for module in found if module in known and module != name}


def _absolute(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    package = name.split(".") if is_package else name.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _known_prefix(dotted: str, known: set[str]) -> str:
    """The longest module of `known` that `dotted` is or lies in ("" if none)."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return ""


def import_graph(package: Path) -> Graph:
    """Each module of the package -> the modules of the same package it imports."""
    files = modules(package)
    known = set(files)
    return {name: imported(name, path, known) for name, path in files.items()}


def cycles(graph: Graph) -> list[list[str]]:
    """The import cycles of a graph: its strongly connected components of two or more modules."""
    return sorted(sorted(component) for component in _components(graph) if len(component) > 1)


def _components(graph: Graph) -> Iterator[set[str]]:
    # Tarjan's algorithm, iterative: a package's depth would not trouble recursion, but a loop
    # keeps the bookkeeping in one place.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            step = next(edges, None)
            if step is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    yield _pop_component(node, stack, on_stack)
            elif step not in index:
                index[step] = low[step] = len(index)
                stack.append(step)
                on_stack.add(step)
                work.append((step, iter(sorted(graph[step]))))
            elif step in on_stack:
                low[node] = min(low[node], index[step])


def _pop_component(node: str, stack: list[str], on_stack: set[str]) -> set[str]:
    component = set()
    while True:
        member = stack.pop()
        on_stack.discard(member)
        component.add(member)
        if member == node:
            return component


@pytest.mark.parametrize(
    ("package", "a_module"),
    [("connector", "connector.cli"), ("devtools/outgrow_braze_dev", "outgrow_braze_dev.bench")],
)
def test_no_package_of_the_repository_has_an_import_cycle(package: str, a_module: str) -> None:
    graph = import_graph(ROOT / package)
    assert graph.get(a_module), "the package was not read"
    assert cycles(graph) == []


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import thing\n")
    (package / "b.py").write_text("def thing():\n    from pkg.sub import c\n")
    (package / "sub" / "c.py").write_text("from .. import a\n")
    (package / "d.py").write_text("import pkg.a\nfrom typing import TYPE_CHECKING\n")
    (package / "e.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import f\n"
    )
    (package / "f.py").write_text("from . import e\n")
    graph = import_graph(package)
    assert graph["pkg.d"] == {"pkg.a"}  # outside every cycle
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c"], ["pkg.e", "pkg.f"]]
