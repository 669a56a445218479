"""The import rules of docs/architecture.md, checked on the code's own imports (function-level ones included):
no cycles, no lower layer importing a higher one, models/ free of components/, serving/ free of the training stack.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

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


def test_no_import_cycles() -> None:
    assert cycles(project_graph()) == []


def test_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_lower_layers_never_import_higher_ones() -> None:
    wrong = [
        f"{src} -> {dst}"
        for src, targets in project_graph().items()
        for dst in targets
        if layer(src) is not None
        and layer(dst) is not None
        and (layer(dst) > layer(src) or (layer(dst) == layer(src) and package_of(dst) != package_of(src)))
    ]
    assert wrong == []


def test_models_import_nothing_of_the_pipeline() -> None:
    wrong = [
        f"{s} -> {d}"
        for s, t in project_graph().items()
        if s.startswith("models")
        for d in t
        if d.split(".")[0] != "models"
    ]
    assert wrong == []


def test_serving_imports_no_training_stack() -> None:
    modules = all_modules()
    wrong = []
    for name, path in modules.items():
        if not name.startswith("serving"):
            continue
        for target in imports_of(path):
            if target in modules and not target.startswith(SERVING_MAY_IMPORT):
                wrong.append(f"{name} -> {target}")
            if target.split(".")[0] in {"models"} or target.startswith(TRAINING_STACK):
                wrong.append(f"{name} -> {target}")
    assert wrong == []


@pytest.mark.parametrize("package", sorted({p.parent for p in (ROOT / "components").rglob("__init__.py")}))
def test_each_subpackage_says_what_it_owns(package: Path) -> None:
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
    assert doc and len(doc) > 40, (
        f"{package.relative_to(ROOT)}/__init__.py needs a docstring: what it owns, what it imports"
    )
