"""No import cycle inside yggcelery: its modules' import graph, read with ast, has no loop.

Edges are the imports a module runs when it is imported: every import outside a function
(``if``/``try`` blocks and class bodies included), but not the body of ``if TYPE_CHECKING:``.
Importing a package runs its ``__init__``, so an import of a package counts as the imports its
``__init__`` makes (a re-export hub adds no edge of its own), and importing ``a.b.c`` from outside
``a.b`` runs ``a.b``'s ``__init__`` first. A second test adds the imports inside functions: one
placed there to dodge a cycle still makes one.
"""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import yggcelery

Graph = dict[str, set[str]]
ImportNode = ast.Import | ast.ImportFrom


@dataclass(frozen=True)
class Source:
    """One module of the package: its dotted name, file, and whether it is a package."""

    name: str
    path: Path

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"

    def parents(self) -> list[str]:
        """The packages Python imports before this module (``a``, ``a.b`` for ``a.b.c``)."""
        parts = self.name.split(".")
        return [".".join(parts[:n]) for n in range(1, len(parts))]


def sources(root: Path) -> dict[str, Source]:
    """Every module under the package directory ``root``, by dotted name."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = Source(name, path)
    return found


def imports(nodes: Iterable[ast.AST], *, in_functions: bool) -> Iterator[ImportNode]:
    """The import statements among ``nodes`` and inside them that run when the module is
    imported (with ``in_functions``, those in function bodies too); never the body of an
    ``if TYPE_CHECKING:``."""
    for node in nodes:
        if isinstance(node, ImportNode):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from imports(node.orelse, in_functions=in_functions)
        elif in_functions or not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from imports(ast.iter_child_nodes(node), in_functions=in_functions)


def targets(module: Source, node: ImportNode, known: dict[str, Source]) -> list[str]:
    """The package's modules ``node`` imports (``from p import m`` names module ``p.m`` if
    there is one, else ``p`` itself)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in known]
    base = node.module or ""
    if node.level:
        parts = module.name.split(".")
        parts = parts if module.is_package else parts[:-1]
        parts = parts[: len(parts) - node.level + 1]
        base = ".".join([*parts, *([base] if base else [])])
    found = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        found.append(sub if sub in known else base)
    return [name for name in found if name in known]


def import_graph(root: Path, *, in_functions: bool = False) -> Graph:
    """Module → the package's modules importing it runs (packages expanded; see the doc)."""
    known = sources(root)
    edges: Graph = {name: set() for name in known}
    for name, module in known.items():
        tree = ast.parse(module.path.read_text(), filename=str(module.path))
        for node in imports(tree.body, in_functions=in_functions):
            for target in targets(module, node, known):
                edges[name].add(target)
                outside = [p for p in known[target].parents() if not name.startswith(p + ".")]
                edges[name].update(p for p in outside if p != name)
        edges[name].discard(name)
    return expand_packages(edges, {n for n, m in known.items() if m.is_package})


def expand_packages(edges: Graph, packages: set[str]) -> Graph:
    """Replace each edge to a package by edges to what its ``__init__`` imports (transitively),
    and drop the packages' own edges: a hub is not a module of its own in a cycle."""

    def through(package: str, seen: frozenset[str]) -> set[str]:
        out: set[str] = set()
        for target in edges[package]:
            if target in packages and target not in seen:
                out |= through(target, seen | {target})
            elif target not in packages:
                out.add(target)
        return out

    expanded: Graph = {}
    for name, targets_ in edges.items():
        if name in packages:
            expanded[name] = set()
            continue
        flat = {t for t in targets_ if t not in packages}
        for package in targets_ & packages:
            flat |= through(package, frozenset({package}))
        expanded[name] = flat - {name}
    return expanded


def cycles(edges: Graph) -> list[list[str]]:
    """One concrete cycle (``[a, b, ..., a]``) per strongly connected group of modules."""
    found = []
    for group in strongly_connected(edges):
        sub = {name: edges[name] & group for name in group}
        try:
            graphlib.TopologicalSorter(sub).prepare()
        except graphlib.CycleError as exc:
            found.append(list(reversed(exc.args[1])))
    return found


def strongly_connected(edges: Graph) -> list[set[str]]:
    """Groups of two or more modules that reach each other (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(group)
    return groups


def describe(found: list[list[str]]) -> str:
    return "; ".join(" → ".join(cycle) for cycle in found)


PACKAGE = Path(yggcelery.__file__).parent


def test_yggcelery_has_no_import_cycle() -> None:
    """The modules' top-level imports form no cycle (each one found is named)."""
    found = cycles(import_graph(PACKAGE))
    assert not found, f"import cycles: {describe(found)}"


def test_no_import_inside_a_function_closes_a_cycle() -> None:
    """With the imports inside functions added, there is still no cycle: none of them is
    there to hide one."""
    found = cycles(import_graph(PACKAGE, in_functions=True))
    assert not found, f"import cycles through imports inside functions: {describe(found)}"


def test_the_graph_reads_the_real_imports() -> None:
    """Known edges are seen, so an empty graph cannot pass the tests above by accident."""
    edges = import_graph(PACKAGE)
    assert "yggcelery.work.fate" in edges["yggcelery.work.perform"]
    assert "yggcelery.tasks" in edges["yggcelery.celery_app"]
    # `from yggcelery.beads import JsonlStore` runs beads/__init__, which imports the stores
    assert "yggcelery.beads.jsonl" in edges["yggcelery.dispatch.legacy"]


CHECKER_CASES = {
    "direct": ({"a": "from pkg import b", "b": "import pkg.a"}, [["pkg.a", "pkg.b"]]),
    "through a package __init__": (
        {"a": "from pkg.sub import thing", "sub/__init__": "from pkg.sub.c import thing",
         "sub/c": "from pkg.a import x"},
        [["pkg.a", "pkg.sub.c"]],
    ),
    "through a parent __init__": (
        {"a": "from pkg.sub.c import x", "sub/__init__": "from pkg.sub.d import y", "sub/c": "",
         "sub/d": "from . import c\nimport pkg.a"},
        [["pkg.a", "pkg.sub.d"]],
    ),
    "package and its submodules": (
        {"__init__": "from pkg.a import x", "a": "from pkg.b import y", "b": "from pkg import a"},
        [["pkg.a", "pkg.b"]],
    ),
    "TYPE_CHECKING": (
        {"a": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import b",
         "b": "import pkg.a"},
        [],
    ),
    "inside a function": ({"a": "def f():\n    from pkg import b", "b": "import pkg.a"}, []),
}  # fmt: skip


def write(root: Path, modules: dict[str, str]) -> Path:
    """Package ``pkg`` under ``root`` with ``modules`` (relative name without .py → source)."""
    for name, text in {"__init__": "", **modules}.items():
        path = root / "pkg" / f"{name}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return root / "pkg"


@pytest.mark.parametrize(("modules", "expected"), CHECKER_CASES.values(), ids=CHECKER_CASES.keys())
def test_the_checker_finds_and_names_cycles(
    tmp_path: Path, modules: dict[str, str], expected: list[list[str]]
) -> None:
    """On small packages written here: direct cycles and cycles through a package's __init__ are
    found and named; a TYPE_CHECKING import or one inside a function is not an edge."""
    found = cycles(import_graph(write(tmp_path, modules)))
    assert [sorted(cycle[:-1]) for cycle in found] == expected
    assert all(cycle[0] == cycle[-1] for cycle in found)


def test_an_import_inside_a_function_counts_when_asked(tmp_path: Path) -> None:
    """With ``in_functions``, a cycle hidden in a function body is found."""
    root = write(tmp_path, {"a": "def f():\n    from pkg import b", "b": "import pkg.a"})
    assert cycles(import_graph(root)) == []
    assert [sorted(c[:-1]) for c in cycles(import_graph(root, in_functions=True))] == [
        ["pkg.a", "pkg.b"]
    ]
