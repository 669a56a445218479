"""Which DVC stage commands a lane forks from its warm server: this installation's plain `dlpipe <args>` only."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pipelines.stagefork import command

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[3]
OURS = str(BIN / "dlpipe")


@pytest.fixture
def env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def test_a_plain_dlpipe_command_is_forked_with_its_arguments(env: dict[str, str]) -> None:
    assert command("dlpipe train tabular --tuned", env) == [OURS, "train", "tabular", "--tuned"]
    assert command("dlpipe train tabular -s train.tabular.lr=0.1", env) == [
        OURS, "train", "tabular", "-s", "train.tabular.lr=0.1"
    ]  # fmt: skip


@pytest.mark.parametrize(
    "cmd",
    [
        "dlpipe train tabular && touch done",  # shell syntax: the shell must run it
        "dlpipe train $TASK",
        "dlpipe train 'tabular'",
        "dlpipe train tabular > log",
        "dlpipe train {a,b}",
        "python -m pipelines.cli train tabular",  # another program
        "DLPIPE_HOME=x dlpipe train tabular",
        "",
    ],
)
def test_anything_else_stays_with_dvc(cmd: str, env: dict[str, str]) -> None:
    assert command(cmd, env) is None


def test_another_dlpipe_first_on_the_path_stays_with_dvc(env: dict[str, str], tmp_path: Path) -> None:
    other = tmp_path / "dlpipe"
    other.write_text("#!/bin/sh\necho another\n")
    other.chmod(0o755)
    assert command("dlpipe train tabular", {**env, "PATH": f"{tmp_path}{os.pathsep}{env['PATH']}"}) is None
    assert command("dlpipe train tabular", {**env, "PATH": str(tmp_path / "empty")}) is None


def test_the_forked_child_runs_the_command_as_a_new_process_would(tmp_path: Path) -> None:
    """Through the real forkserver, the entry point swapped for a probe (tests/helpers/stagefork_probe.py, in an
    interpreter of its own): the child gets DVC's arguments, directory and environment, multiprocessing's default
    start method (not the server's forkserver), runs its at-exit handlers, and its exit code comes back."""
    import json
    import subprocess

    probe = [sys.executable, "-m", "tests.helpers.stagefork_probe", OURS, str(tmp_path), "3"]
    assert subprocess.run(probe, cwd=ROOT, timeout=120).returncode == 3
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen == {"argv": [OURS, "3"], "cwd": str(tmp_path), "probe": "from DVC", "start_method": "fork"}
    assert (tmp_path / "atexit").read_text() == "ran"


def test_kfp_locals_command_for_a_project_step_is_forked_and_a_pip_install_is_not() -> None:
    """kfp.local's SubprocessRunner command for a component of this project (sh -ec SCRIPT SOURCE ARGS, `python3`
    made this interpreter) is recognised; a component that installs packages first stays kfp.local's subprocess."""
    from kfp import dsl
    from kfp.local.subprocess_task_handler import replace_python_executable

    from components.kubeflow import train
    from pipelines.stagefork import _kfp_step

    def full_command(component: object) -> list[str]:
        container = component.component_spec.implementation.container  # type: ignore[attr-defined]
        return replace_python_executable([*container.command, *container.args], sys.executable)

    source, args = _kfp_step(full_command(train))  # type: ignore[misc]
    assert "def train(" in source and args[-2:] == ["--function_to_execute", "train"]

    @dsl.component(base_image="python", packages_to_install=["numpy"], install_kfp_package=False)
    def installs():  # no annotation: this module's are strings, which KFP cannot read
        pass

    assert _kfp_step(full_command(installs)) is None
    assert _kfp_step(["sh", "-ec", "echo hello"]) is None
