"""The import rules of docs/architecture.md, checked on the code's own imports (function-level ones included):
no cycles, no lower layer importing a higher one, models/ free of components/, serving/ free of the training stack.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.unit.import_graph import (
    ROOT,
    SERVING_MAY_IMPORT,
    TRAINING_STACK,
    all_modules,
    cycles,
    imports_of,
    layer,
    package_of,
    project_graph,
)


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
