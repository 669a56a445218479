"""kfp.local steps forked from the warm server (pipelines/stagefork.py's `install_kfp`), as `dlpipe pipeline run
--local` runs them: a real kfp.local run of a probe component.

No `from __future__ import annotations` here: KFP reads the probe's annotations to type its I/O."""

import json
import multiprocessing.forkserver
import os
import shutil
from pathlib import Path

import pytest
from kfp import dsl
from kfp.dsl import Artifact, Output


@dsl.component(base_image="python", install_kfp_package=False)
def probe(code: int, seen: Output[Artifact]):
    """What the step sees; exits with `code`."""
    import json
    import multiprocessing
    import os
    import sys

    record = {
        "warm": "torch" in sys.modules,  # a new process has not imported torch: the server has
        "cwd": os.getcwd(),
        "path1": sys.path[1],  # after the component's folder, which kfp's executor puts first: `python -m`'s
        "probe": os.environ.get("KFP_FORK_PROBE"),
        "runtime": os.environ.get("_KFP_RUNTIME"),
        "start_method": multiprocessing.get_start_method(),
    }
    with open(seen.path, "w") as out:
        json.dump(record, out)
    print("probe says hello", flush=True)
    print("probe complains", file=sys.stderr, flush=True)
    if code:
        raise SystemExit(code)


def test_a_kfp_local_step_runs_forked_as_its_subprocess_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The probe through kfp.local's own subprocess, then forked: the same directory, environment (this process's
    at the call), `python -m`'s sys.path, start method and output (relayed through kfp.local's log); only the forked
    one finds torch imported (the warm server). The step's temporary source folder goes, and a failing exit code
    fails the step."""
    import kfp.local
    from kfp.local import subprocess_task_handler as handler

    from pipelines import stagefork

    workdir, tmp = tmp_path / "work", tmp_path / "tmp"
    workdir.mkdir()
    tmp.mkdir()
    # the warm server, started (unless it runs already) before the steps' temporary folder is set: its import of
    # torch._dynamo makes torch's inductor cache folder in $TMPDIR, as a `dlpipe train` process's does in its own
    stagefork._context()
    multiprocessing.forkserver.ensure_running()
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("KFP_FORK_PROBE", "from the caller")
    monkeypatch.setenv("TMPDIR", str(tmp))
    # a workspace of the test's own: kfp.local makes one in the system's temp folder, removed after a pipeline, not
    # after a lone component
    runner = kfp.local.SubprocessRunner(use_venv=False)
    kfp.local.init(runner=runner, pipeline_root=str(tmp_path / "root"), workspace_root=str(tmp_path / "workspace"))

    def run() -> tuple[dict, str]:
        seen = json.loads(Path(probe(code=0).outputs["seen"].path).read_text())
        return seen, capfd.readouterr().out

    with monkeypatch.context() as plain:  # kfp.local's own subprocess, whether or not another test installed ours
        plain.setattr(handler, "run_local_subprocess", getattr(handler.run_local_subprocess, "unforked", None) or
                      handler.run_local_subprocess)  # fmt: skip
        new_process, new_out = run()
    for folder in tmp.iterdir():  # kfp's script leaves its `mktemp -d` folder
        shutil.rmtree(folder)
    stagefork.install_kfp()
    forked, out = run()

    assert new_process.pop("warm") is False and forked.pop("warm") is True
    assert forked == new_process and forked["path1"] == str(workdir) and forked["runtime"] == "true"
    assert forked["start_method"] == "fork" and forked["probe"] == "from the caller"
    for text in (new_out, out):
        assert "probe says hello" in text and "probe complains" in text
    assert list(tmp.iterdir()) == []

    with pytest.raises(RuntimeError, match="FAILURE"):
        probe(code=3)
    assert "SystemExit" not in capfd.readouterr().out  # an exit code, as a process gives, not a traceback
    assert os.environ["KFP_FORK_PROBE"] == "from the caller"
