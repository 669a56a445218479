"""`dlpipe` steps forked from a warm process: how `dlpipe repro`'s lanes start DVC's `dlpipe <step>` commands, and how
`dlpipe pipeline run --local` starts kfp.local's steps.

A `dlpipe train` / `evaluate` / `export` / `register` process spends 2-5 s importing torch, MLflow and its SQLite
store before it works, and `make run` starts some 50 of them (docs/results.md); a kfp.local step imports the same.
Each is started instead as a child forked from a server that imported those libraries once (the standard library's
multiprocessing forkserver, started by the process's first such step):
- in a lane (pipelines/dvclock.py), DVC runs each stage's command through `install`'s runner: a command that is
  exactly `dlpipe <args>` (no shell syntax) runs forked with the working directory, environment and arguments DVC
  gives it; any other command goes to DVC's own runner. Plain `dvc repro` and `dvc exp run` start every command as a
  new process.
- under `install_kfp`, kfp.local's SubprocessRunner runs a lightweight component (`sh -ec SCRIPT SOURCE ARGS`, where
  SCRIPT writes SOURCE to `$(mktemp -d)/ephemeral_component.py` and runs `python -m kfp.dsl.executor_main` on it)
  as that script would, forked, its output relayed line by line as kfp.local relays a subprocess's; any other
  command (a pip install before the step, say) keeps kfp.local's subprocess.
The child is the same entry point with the same exit code, output and at-exit handlers as the new process.

Forking is safe here because the server only imports: it starts no Python thread, no OpenMP pool and no CUDA
context, and opens no file or database a child would share; the native threads two libraries start on import
(OpenBLAS's workers, pyarrow's jemalloc) are made fork-safe by those libraries. Each child is a copy of the server
as it was after the imports, so children share nothing that one of them changes. Linux only: elsewhere a process
that has loaded torch's libraries is not known to fork safely (macOS's Objective-C runtime).
"""

from __future__ import annotations

import atexit
import functools
import gc
import multiprocessing
import os
import runpy
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

# What the heavy steps import before they work; the server imports them once (a module that fails to import is
# skipped, and the step imports it itself).
PRELOAD = [
    "pipelines.cli",
    "torch",
    "torch._dynamo",  # 1.5 s: imported by the first optimizer a train or tune step builds (torch.optim's own)
    "numpy",
    "mlflow",
    "mlflow.store.tracking.sqlalchemy_store",
    "components.core.tracking",
    "components.train.checkpoint",
    "onnx",
    "sklearn.preprocessing",  # prepare (tables)
    "sklearn.metrics",  # evaluate
    "components.evaluate.step",  # evaluate: matplotlib on its Agg backend (0.4 s)
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


def _become(argv: list[str], cwd: str, env: dict[str, str]) -> None:
    """In the forked child: the arguments, directory and environment of the new process it stands for. The objects
    it inherits from the server (some 600,000: torch, MLflow, ...) are frozen first (gc.freeze: the collector no
    longer visits them), so its collections walk only what the command makes, as in a new process, and do not
    write to the server's pages (copy-on-write) on the way."""
    gc.freeze()
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = argv
    multiprocessing.set_start_method(None, force=True)  # the platform's default again, not the server's forkserver


def _main(entry: Callable[[], object]) -> None:
    """Run `entry` as a new process's main module runs: an uncaught exception prints its traceback (from `entry` on,
    not multiprocessing's frames) and exits 1; then the interpreter's exit order: threads, at-exit handlers (MLflow's
    flush)."""
    try:
        entry()
    except Exception as err:
        traceback.print_exception(type(err), err, err.__traceback__.tb_next if err.__traceback__ else None)
        raise SystemExit(1) from None
    finally:
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()


def _child(argv: list[str], cwd: str, env: dict[str, str]) -> None:
    """The command, in the forked child: what a new `dlpipe` process would do (its console script, argv[0]), at-exit
    handlers included."""
    _become(argv, cwd, env)
    _main(functools.partial(runpy.run_path, argv[0], run_name="__main__"))


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


@functools.cache
def _kfp_script() -> list[str]:
    """`sh -ec SCRIPT` as kfp writes it for this project's components, run by this interpreter."""
    from kfp.local.subprocess_task_handler import replace_python_executable

    from components.kubeflow import select

    return replace_python_executable(select.component_spec.implementation.container.command[:3], sys.executable)


def _kfp_step(full_command: list[str]) -> tuple[str, list[str]] | None:
    """(component source, executor arguments) when `full_command` is kfp.local's command for a lightweight
    component run in this interpreter (the command kfp writes for this project's components), else None."""
    if len(full_command) < 4 or full_command[:3] != _kfp_script():
        return None
    return full_command[3], full_command[4:]


def _step_child(argv: list[str], cwd: str, env: dict[str, str], out: Any) -> None:
    """A kfp.local step in the forked child: what SCRIPT's `python -m kfp.dsl.executor_main` would do, its output
    and errors into the pipe `out`."""
    for fd in (1, 2):
        os.dup2(out.fileno(), fd)
    out.close()
    _become(argv, cwd, env)
    sys.path.insert(0, cwd)  # as `python -m` does
    _main(_executor_main)


def _executor_main() -> None:
    """`python -m kfp.dsl.executor_main` (the arguments are in sys.argv)."""
    runpy.run_module("kfp.dsl.executor_main", run_name="__main__", alter_sys=True)


def run_step(source: str, args: list[str], env: dict[str, str]) -> int:
    """Run a kfp.local step (its component's source and executor arguments) forked from the server, printing its
    output as it comes; its exit code (negative: the signal that ended it)."""
    program = Path(tempfile.mkdtemp(dir=env.get("TMPDIR")))  # the script's `mktemp -d`
    module = program / "ephemeral_component.py"
    module.write_text(source)
    argv = [sys.executable, "--component_module_path", str(module), *args]
    read, write = multiprocessing.Pipe(duplex=False)
    try:
        proc = _context().Process(target=_step_child, args=(argv, os.getcwd(), env, write))
        proc.start()
        write.close()
        with open(read.fileno(), closefd=False) as lines:
            for line in lines:
                print(line, end="")
        print("\n")  # as kfp.local, after a step's logs
        proc.join()
    finally:
        read.close()
        write.close()
        shutil.rmtree(program, ignore_errors=True)
    assert proc.exitcode is not None
    return proc.exitcode


def install_kfp() -> None:
    """Make kfp.local's SubprocessRunner run this project's steps through `run_step` (Linux only, as `install`)."""
    from kfp.local import subprocess_task_handler as handler

    own = handler.run_local_subprocess
    if not sys.platform.startswith("linux") or hasattr(own, "unforked"):
        return

    def run_local_subprocess(full_command: list[str], env_vars: dict[str, str] | None = None) -> int:
        step = _kfp_step(full_command)
        if step is None:
            return own(full_command, env_vars)
        return run_step(*step, {**os.environ, **(env_vars or {}), "_KFP_RUNTIME": "true"})

    run_local_subprocess.unforked = own  # type: ignore[attr-defined]
    handler.run_local_subprocess = run_local_subprocess
