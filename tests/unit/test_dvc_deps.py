"""Every DVC stage depends on the code its command runs: editing any module a stage imports (directly or not,
imports inside functions included) makes `dvc repro` run that stage again."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from tests.unit.import_graph import ROOT, all_modules, closure, imports_of, project_graph

CLI = ROOT / "pipelines" / "cli"
GROUPS = {"app": (), "data_app": ("data",), "experiment_app": ("experiment",)}  # Typer object -> command words


def commands() -> dict[tuple[str, ...], set[str]]:
    """`dlpipe` command words -> the project modules its function imports, with its module's own top-level imports
    (the command's file itself is code the stage runs too: `cli_file`)."""
    modules = all_modules()
    found: dict[tuple[str, ...], set[str]] = {}
    for path in CLI.glob("*.py"):
        tree = ast.parse(path.read_text())
        top = {m for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom) for m in _imports(node)}
        for fn in (n for n in tree.body if isinstance(n, ast.FunctionDef)):
            for deco in fn.decorator_list:
                if not (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute)):
                    continue
                group = getattr(deco.func.value, "id", None)
                if deco.func.attr != "command" or group not in GROUPS:
                    continue
                named = [a.value for a in deco.args if isinstance(a, ast.Constant)]
                words = (*GROUPS[group], named[0] if named else fn.name.replace("_", "-"))
                inner = {
                    m for node in ast.walk(fn) if isinstance(node, ast.Import | ast.ImportFrom) for m in _imports(node)
                }
                found[words] = {m for m in top | inner if m in modules}
    return found


def cli_file(words: tuple[str, ...]) -> Path:
    """The pipelines/cli module that defines the command."""
    group = {"data": "data", "experiment": "experiments"}.get(words[0], "steps")
    return CLI / f"{group}.py"


def _imports(node: ast.Import | ast.ImportFrom) -> set[str]:
    if isinstance(node, ast.Import):
        return {a.name for a in node.names}
    return {node.module, *(f"{node.module}.{a.name}" for a in node.names)} if node.module else set()


def stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def code_deps(stage: dict) -> list[str]:
    body = stage.get("do", stage)
    return [d for d in body.get("deps", []) if "${" not in d and not d.startswith(("data/", "artifacts/", "metrics/"))]


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("name", sorted(stages()))
def test_stage_depends_on_the_code_it_runs(name: str) -> None:
    stage = stages()[name]
    words = tuple(w for w in stage.get("do", stage)["cmd"].split()[1:] if not w.startswith(("$", "-")))
    cli = commands()
    command = next((cli[words[:n]] for n in (2, 1) if words[:n] in cli), None)
    assert command is not None, f"stage {name}: no dlpipe command for {words}"
    modules = all_modules()
    runs = closure(project_graph(), command)
    missing = sorted(
        {modules[m].relative_to(ROOT).as_posix() for m in runs if not covered(modules[m], code_deps(stage))}
    )
    assert missing == [], f"stage {name} runs code it does not depend on: {missing}"


def test_a_stage_without_its_code_fails_the_check() -> None:
    modules = all_modules()
    runs = closure(project_graph(), commands()[("evaluate",)])
    assert not all(covered(modules[m], ["components/evaluate"]) for m in runs)
    assert imports_of(modules["components.evaluate.step"]) & {"components.train.checkpoint"}


def missing_blocks(dvc_stages: dict[str, dict], params: dict) -> list[str]:
    """The `section.<task>` params that a per-task stage depends on and params.yaml lacks (DVC stops on them)."""
    missing = []
    for name, stage in dvc_stages.items():
        if stage.get("foreach") != "${prepare}":
            continue
        for dep in stage["do"].get("params", []):
            if isinstance(dep, str) and dep.endswith(".${key}"):
                section = dep.removesuffix(".${key}")
                missing += [f"{name}: {section}.{task}" for task in params["prepare"] if task not in params[section]]
    return missing


def test_every_task_has_the_blocks_its_stages_depend_on() -> None:
    """augment@, tune@, train@ ... each depend on their own task's block only, so every task has one (`{}` for the
    defaults): without it `dvc repro` fails on a missing parameter."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert missing_blocks(stages(), params) == []
    del params["tune"]["mnist"]
    assert missing_blocks(stages(), params) == ["tune: tune.mnist"]
