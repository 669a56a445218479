"""End to end for the training engine: SIGKILL + --resume is exact, torchrun DDP matches one process, and the
TrainJob step falls back to torchrun outside a cluster."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import PARAMS

pytestmark = pytest.mark.slow  # about 55 s: training processes killed, resumed and run under torchrun

DLPIPE = str(Path(sys.executable).with_name("dlpipe"))
OVERRIDES = ["-s", "epochs=8", "-s", "batch_size=1", "-s", "model.norm=none"]
OVERRIDES += ["-s", "early_stopping.enabled=false", "-s", "checkpoint_interval_s=0"]


def dlpipe(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([DLPIPE, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path / "artifacts" / "tabular" / "checkpoint.pt", weights_only=True)["model"]


def test_sigkill_then_resume_gives_identical_weights(
    workdir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from pipelines.cli import app

    # the uninterrupted reference: the same command, run in this process (8 s of start-up less than a new one)
    reference = tmp_path_factory.mktemp("reference")
    shutil.copytree(workdir, reference, dirs_exist_ok=True)
    with monkeypatch.context() as here:
        here.chdir(reference)
        result = CliRunner().invoke(app, ["train", "tabular", *OVERRIDES])
    assert result.exit_code == 0, result.output[-3000:]

    ckpt = workdir / "artifacts" / "tabular" / "checkpoint.pt"
    proc = subprocess.Popen(
        [DLPIPE, "train", "tabular", *OVERRIDES], cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    killed_at = None
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if ckpt.is_file() and (epoch := torch.load(ckpt, weights_only=True)["loop"]["epoch"]) >= 2:
            os.kill(proc.pid, signal.SIGKILL)
            killed_at = epoch
            break
        time.sleep(0.05)
    proc.wait()
    assert killed_at is not None and killed_at < 8, "training ended before it could be killed"
    killed_run = json.loads((workdir / "artifacts" / "tabular" / "run.json").read_text())["run_id"]

    dlpipe(workdir, "train", "tabular", *OVERRIDES, "--resume")
    resumed, uninterrupted = weights(workdir), weights(reference)
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        assert torch.equal(resumed[name], uninterrupted[name]), name

    import mlflow

    client = mlflow.MlflowClient()
    assert client.get_run(killed_run).info.status == "KILLED"
    new_run = json.loads((workdir / "artifacts" / "tabular" / "run.json").read_text())["run_id"]
    assert client.get_run(new_run).data.tags["resumed_from"] == killed_run


def test_torchrun_two_processes_match_one(workdir: Path, tabular_artifacts: Path, tmp_path: Path) -> None:
    from components.core.layout import Layout
    from components.evaluate.step import evaluate  # here, not at collection: it imports matplotlib (1.1 s)

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "--no-python"]
    env = os.environ | {"TMPDIR": str(tmp_path)}  # torchrun leaves its log folder in $TMPDIR
    proc = subprocess.run(
        [*cmd, DLPIPE, "train", "tabular"], cwd=workdir, capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    paths = Layout("tabular", workdir)  # the step `dlpipe evaluate` runs (tests/e2e/test_dvc.py runs the command)
    ddp = evaluate(paths.data, paths.model, paths.metrics, paths.plots)
    single = json.loads((tabular_artifacts.parents[1] / "metrics" / "tabular.json").read_text())
    assert abs(ddp["accuracy"] - single["accuracy"]) <= 0.03 and ddp["roc_auc"] >= 0.98, (ddp, single)

    import mlflow

    run_id = json.loads((workdir / "artifacts" / "tabular" / "run.json").read_text())["run_id"]
    assert mlflow.MlflowClient().get_run(run_id).data.tags["world_size"] == "2"


def test_trainjob_step_falls_back_to_torchrun_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside a cluster the TrainJob step runs the same `torchrun dlpipe train` on this machine, with the
    TrainJob's world size (2 nodes x 1 CPU process): DDP over gloo, rank 0 tracks and writes. torchrun's log
    folder does not stay in the system's temp folder."""
    from mlflow import MlflowClient

    from components.config import DistributedConfig, TrainConfig, stage_config
    from components.core.io import read_json
    from components.data.augment import augment
    from components.data.ingest import ingest
    from components.data.prepare import prepare
    from components.train.trainjob import in_cluster, train_job

    assert not in_cluster()
    prep = stage_config(PARAMS, "prepare", "tabular_wine")
    data, policy = tmp_path / "data", tmp_path / "augment"
    prepare(ingest(prep.dataset, tmp_path / "raw").parent, data, prep, "tabular_wine")
    augment(data, policy, stage_config(PARAMS, "augment", "tabular_wine"), "tabular_wine")
    cfg = TrainConfig.model_validate({**PARAMS["train"]["tabular_wine"], "epochs": 3})
    out, spec = tmp_path / "model", DistributedConfig(nodes=2, gpus_per_node=0)
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(system_tmp))
    summary = train_job(data, out, cfg, "tabular_wine", policy, spec, "unused-here", "job", {})
    assert not list(system_tmp.glob("torchelastic_*"))  # (inductor's cache, torchinductor_<user>, is meant to stay)
    assert summary["epochs_run"] == 3 and (out / "checkpoint.pt").is_file()
    run = MlflowClient().get_run(read_json(out / "run.json")["run_id"])
    assert run.data.tags["world_size"] == "2" and run.info.status == "FINISHED"
