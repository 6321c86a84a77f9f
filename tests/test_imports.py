"""No import cycle between moalign's modules, counting imports inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

import moalign

ROOT = Path(moalign.__file__).parent


def _module_graph() -> dict[str, set[str]]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package[: len(package) - (node.level - 1)]
            elif (node.module or "").startswith("moalign"):
                base = []
            else:
                continue
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                dep = sub if sub in mods else target
                # importing a submodule runs its package's __init__ first
                chain = dep.split(".")
                for i in range(2, len(chain) + 1):
                    prefix = ".".join(chain[:i])
                    if prefix in mods and prefix != name and not name.startswith(prefix + "."):
                        graph[name].add(prefix)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(u):
        state[u] = 1
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                return stack[stack.index(v):] + [v]
            if not state.get(v) and (found := visit(v)):
                return found
        stack.pop()
        state[u] = 2
        return None

    for u in sorted(graph):
        if not state.get(u) and (found := visit(u)):
            return found
    return None


def test_no_import_cycle_even_through_function_level_imports():
    graph = _module_graph()
    assert "moalign.trainer" in graph and "moalign.evaluation" in graph["moalign.trainer"]
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_detector_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
