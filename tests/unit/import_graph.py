"""The project's import graph, read from the source with ast (imports inside functions included): what the
architecture and DVC-dependency tests check."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("components", "models", "pipelines", "serving")

# Layers of components/, low to high: a module imports its own package, or packages of lower layers only.
LAYERS = {
    "components.core": 0,
    "components.config": 1,
    "components.data": 2,
    "components.train": 3,
    "components.tune": 4,
    "components.evaluate": 4,
    "components.release": 4,
    "components.experiments": 5,
    "components.kubeflow": 6,
    "pipelines": 7,
}
SERVING_MAY_IMPORT = ("components.core", "components.config", "components.data", "components.release", "serving")
TRAINING_STACK = ("torch", "torchvision", "optuna", "mlflow.pytorch")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of the file (functions included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def project_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (a `from pkg import name` counts when `pkg.name` is a module)."""
    modules = all_modules()
    return {name: {i for i in imports_of(path) if i in modules and i != name} for name, path in modules.items()}


def layer(module: str) -> int | None:
    hits = [
        (len(prefix), rank) for prefix, rank in LAYERS.items() if module == prefix or module.startswith(prefix + ".")
    ]
    return max(hits)[1] if hits else None


def package_of(module: str) -> str:
    return next(p for p in sorted(LAYERS, key=len, reverse=True) if module == p or module.startswith(p + "."))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

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
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def closure(graph: dict[str, set[str]], start: set[str]) -> set[str]:
    """`start` and every project module it imports, directly or not."""
    seen, todo = set(), list(start)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph.get(m, ()))
    return seen
