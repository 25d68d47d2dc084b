"""Print the import graph of a package's modules and exit 1 if the graph has a cycle.

    python tools/import_graph.py [--packages] [PACKAGE_DIR]      (default: src/frequnlearn)

Each line is `module -> imported modules`, counting only modules of the package itself and imports
inside functions too (marked `*`): a lazy import still ties two modules together. Imports under
`if TYPE_CHECKING:` are left out, since they never run. `from pkg import name` points at the
submodule `pkg.name` when there is one, else at `pkg` (its `__init__`). A cycle is a set of modules
that reach each other; each is printed with one closed path through it. Standard library only.

With `--packages` the units are the package's top-level parts (`config`, `study`, `records`, ...):
every import between two of them counts, those inside functions and under `if TYPE_CHECKING:` too
(a type a module only names still ties its package to the other one), and a cycle of packages fails
even where the modules themselves form none. The root package's own `__init__` is left out (its
version string is not a dependency of anything).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path


def module_names(package_dir: Path) -> dict[str, Path]:
    """Dotted name of every module under `package_dir` (a package's name is its `__init__`'s)."""
    root = package_dir.parent
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, typing_too: bool = False) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """(import node, inside a function) for every import that can run (with `typing_too`, also those
    under `if TYPE_CHECKING:`)."""

    def walk(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child) and not typing_too:
                for other in child.orelse:
                    yield from walk(other, in_function)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, in_function
            yield from walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    yield from walk(tree, False)


def _base(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an `ImportFrom` names (relative imports resolved against `module`)."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def import_graph(package_dir: Path, typing_too: bool = False) -> dict[str, dict[str, bool]]:
    """module -> {imported module: only imported inside functions}, within the package."""
    modules = module_names(package_dir)
    graph: dict[str, dict[str, bool]] = {}
    for module, path in modules.items():
        edges: dict[str, bool] = {}
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, lazy in _imports(tree, typing_too):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _base(module, path, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                if target in modules and target != module:
                    edges[target] = edges.get(target, True) and lazy
        graph[module] = edges
    return graph


def package_graph(package_dir: Path) -> dict[str, dict[str, bool]]:
    """top-level part -> {other part: only imported inside functions or for types}: the module graph
    (type-only imports included) with each module replaced by the part of the package it is in."""
    typed = import_graph(package_dir, typing_too=True)
    running = import_graph(package_dir)

    def part(module: str) -> str | None:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else None

    graph: dict[str, dict[str, bool]] = {p: {} for p in filter(None, map(part, typed))}
    for module, edges in typed.items():
        src = part(module)
        for target, lazy in edges.items():
            dst = part(target)
            if src is None or dst is None or src == dst:
                continue
            only_lazy = lazy or target not in running[module]
            graph[src][dst] = graph[src].get(dst, True) and only_lazy
    return graph


def cycles(graph: dict[str, dict[str, bool]]) -> list[list[str]]:
    """Every set of two or more modules that reach each other, sorted (Tarjan's strongly connected
    components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(max(1000, 10 * len(graph)))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(components)


def closed_path(graph: dict[str, dict[str, bool]], component: list[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, staying inside it."""
    start, inside = component[0], set(component)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w not in inside:
                    continue
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError("a strongly connected component always closes")


def main(argv: list[str]) -> int:
    packages = "--packages" in argv
    args = [a for a in argv if a != "--packages"]
    default = Path(__file__).resolve().parent.parent / "src" / "frequnlearn"
    package_dir = Path(args[0]) if args else default
    if not (package_dir / "__init__.py").is_file():
        print(f"error: {package_dir} is not a package directory (no __init__.py)", file=sys.stderr)
        return 2
    graph = package_graph(package_dir) if packages else import_graph(package_dir)
    unit = "packages" if packages else "modules"
    for module in sorted(graph):
        targets = ", ".join(t + ("*" if lazy else "") for t, lazy in sorted(graph[module].items()))
        print(f"{module} -> {targets}")
    found = cycles(graph)
    lazy = "inside functions or for types only" if packages else "only inside functions"
    print(f"\n{len(graph)} {unit}; * imported {lazy}")
    for component in found:
        print(f"cycle among {len(component)} {unit}: {', '.join(component)}")
        print("  e.g. " + " -> ".join(closed_path(graph, component)))
    if not found:
        print(f"no import cycles among {unit}" if packages else "no import cycles")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
