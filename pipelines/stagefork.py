"""DVC stage commands forked from a warm process: how `dlpipe repro`'s lanes start `dlpipe <step>` commands.

A `dlpipe train` / `evaluate` / `export` / `register` process spends 2-5 s importing torch, MLflow and its SQLite
store before it works, and `make run` starts some 50 of them (docs/results.md). In a lane (pipelines/dvclock.py),
DVC runs each stage's command through `run`: a command that is exactly `dlpipe <args>` (no shell syntax) runs in a
child forked from a server that imported those libraries once (the standard library's multiprocessing forkserver,
started by the lane's first such command), with the working directory, environment and arguments DVC gives the
command; any other command goes to DVC's own runner. The child is the same `dlpipe` entry point with the same exit
code, output and at-exit handlers; plain `dvc repro` and `dvc exp run` start every command as a new process.

Forking is safe here because the server only imports: it starts no Python thread, no OpenMP pool and no CUDA
context, and opens no file or database a child would share; the native threads two libraries start on import
(OpenBLAS's workers, pyarrow's jemalloc) are made fork-safe by those libraries. Each child is a copy of the server
as it was after the imports, so children share nothing that one of them changes.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import shlex
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any

# What the heavy steps import before they work; the server imports them once (a module that fails to import is
# skipped, and the step imports it itself).
PRELOAD = [
    "pipelines.cli",
    "torch",
    "numpy",
    "mlflow",
    "mlflow.store.tracking.sqlalchemy_store",
    "components.core.tracking",
    "components.train.checkpoint",
    "onnx",
    "sklearn.preprocessing",  # prepare (tables)
    "sklearn.metrics",  # evaluate
]
SHELL_SYNTAX = set("|&;<>()$`\\\"'*?[]{}#~\n")  # what the shell would interpret: such a command stays DVC's


def _context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def command(cmd: str, env: dict[str, str]) -> list[str] | None:
    """`cmd` as the argv of this installation's `dlpipe`, or None when it is anything else (shell syntax, another
    program, another `dlpipe` first on the command's PATH)."""
    if SHELL_SYNTAX & set(cmd):
        return None
    argv = shlex.split(cmd)
    if not argv or argv[0] != "dlpipe":
        return None
    found = shutil.which("dlpipe", path=env.get("PATH"))
    ours = Path(sys.executable).parent / "dlpipe"
    if found is None or not ours.is_file() or not os.path.samefile(found, ours):
        return None
    return [found, *argv[1:]]


def _child(argv: list[str], cwd: str, env: dict[str, str]) -> None:
    """The command, in the forked child: what a new `dlpipe` process would do, at-exit handlers included."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = argv
    multiprocessing.set_start_method(None, force=True)  # the platform's default again, not the server's forkserver
    from pipelines.cli import main

    try:
        main()
    finally:
        threading._shutdown()  # type: ignore[attr-defined]  # the interpreter's exit order: threads, then atexit
        atexit._run_exitfuncs()


def run(argv: list[str], cwd: str, env: dict[str, str]) -> int:
    """Run `argv` forked from the server; its exit code (negative: the signal that ended it)."""
    proc = _context().Process(target=_child, args=(argv, cwd, env))  # the first one starts the server
    old = None
    if threading.current_thread() is threading.main_thread():
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as DVC's runner: Ctrl-C reaches the command itself
    try:
        proc.start()
        proc.join()
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)
    assert proc.exitcode is not None
    return proc.exitcode


def install() -> None:
    """Make DVC run `dlpipe` stage commands through `run`; other commands keep DVC's runner. Linux only: elsewhere a
    process that has loaded torch's libraries is not known to fork safely (macOS's Objective-C runtime)."""
    import dvc.stage.run as stage_run
    from dvc.stage.exceptions import StageCmdFailedError

    if not sys.platform.startswith("linux"):
        return
    own = stage_run._run  # AttributeError on a DVC that no longer runs commands through it

    def _run(executable: Any, cmd: str, **kwargs: Any) -> None:
        argv = command(cmd, kwargs["env"])
        if argv is None:
            return own(executable, cmd, **kwargs)
        code = run(argv, kwargs["cwd"], kwargs["env"])
        if code != 0:
            raise StageCmdFailedError(cmd, code)
        return None

    stage_run._run = _run
