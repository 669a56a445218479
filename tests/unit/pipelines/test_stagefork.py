"""Which DVC stage commands a lane forks from its warm server: this installation's plain `dlpipe <args>` only."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pipelines.stagefork import command

BIN = Path(sys.executable).parent
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


def test_the_forked_child_runs_the_command_as_a_new_process_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the real forkserver, the entry point swapped for a probe (tests/helpers/stagefork_probe.py): the
    child gets DVC's arguments, directory and environment, multiprocessing's default start method (not the server's
    forkserver), runs its at-exit handlers, and its exit code comes back."""
    import json

    from pipelines import stagefork

    monkeypatch.setattr(stagefork, "PRELOAD", ["tests.helpers.stagefork_probe"])
    env = {**os.environ, "STAGEFORK_PROBE": "from DVC"}
    assert stagefork.run([OURS, "3"], str(tmp_path), env) == 3
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen == {"argv": [OURS, "3"], "cwd": str(tmp_path), "probe": "from DVC", "start_method": "fork"}
    assert (tmp_path / "atexit").read_text() == "ran"
