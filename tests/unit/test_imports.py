"""The module graph of exporter/ and bot/: no import cycle (lazy and TYPE_CHECKING imports
included), and exporter/ never imports bot/. Read from the source with `ast`, nothing imported."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("exporter", "bot")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "__pycache__" not in path.parts:
                found[_module_name(path)] = path
    return found


def _imported(path: Path, name: str) -> set[str]:
    """Every module `name` (at `path`) imports anywhere in its body, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets.add(module)
            # `from pkg import mod` imports a module too
            targets.update(f"{module}.{alias.name}" for alias in node.names)
    return targets


def _resolve(target: str, modules: dict[str, Path]) -> str | None:
    """The module of ours `target` names (the longest known prefix), or None."""
    parts = target.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for target in _imported(path, name):
            resolved = _resolve(target, modules)
            if resolved is not None and resolved != name:
                edges.add(resolved)
        graph[name] = edges
    return graph


def _without_parent_packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Importing `a.b` runs `a/__init__.py` first; a package that re-exports its own modules is
    not a cycle of them, so a module's edge to its own parent packages is left out."""
    return {name: {dep for dep in deps if not name.startswith(dep + ".")} for name, deps in graph.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search, colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                cycle = visit(dep)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def all_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in graph.get(node, ()):
            if dep not in index:
                connect(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(components)


def test_the_graph_is_read_from_every_module():
    graph = import_graph()
    assert "exporter.cli" in graph and "bot.app" in graph
    assert "exporter.app" in graph["exporter.cli"]  # a lazy import inside main() counts


def test_no_import_cycle_in_exporter_and_bot():
    graph = _without_parent_packages(import_graph())
    cycle = find_cycle(graph)
    assert cycle is None, ("import cycle: " + " -> ".join(cycle) + "\nall cyclic groups: "
                           + "; ".join(", ".join(group) for group in all_cycles(graph)))


def test_exporter_never_imports_bot():
    graph = import_graph()
    bad = {name: sorted(dep for dep in deps if dep.split(".")[0] == "bot")
           for name, deps in graph.items() if name.split(".")[0] == "exporter"}
    assert not {name: deps for name, deps in bad.items() if deps}


def test_nothing_imports_the_command_line():
    graph = import_graph()
    assert not sorted(name for name, deps in graph.items() if "exporter.cli" in deps and name != "exporter.__main__")


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert all_cycles(graph) == [["a", "b", "c"]]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
