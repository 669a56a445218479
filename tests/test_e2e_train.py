"""End to end for the training engine: SIGKILL + --resume is exact, and torchrun DDP matches one process."""

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

from tests.conftest import ROOT

DLPIPE = str(Path(sys.executable).with_name("dlpipe"))
OVERRIDES = ["-s", "epochs=8", "-s", "batch_size=1", "-s", "model.norm=none"]
OVERRIDES += ["-s", "early_stopping.enabled=false", "-s", "checkpoint_interval_s=0"]


@pytest.fixture
def workdir(tmp_path: Path, tabular_artifacts: Path) -> Path:
    """A working directory holding params.yaml and the tabular task's prepared data."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(tabular_artifacts / "data", tmp_path / "artifacts" / "tabular" / "data")
    return tmp_path


def dlpipe(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([DLPIPE, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path / "artifacts" / "tabular" / "checkpoint.pt", weights_only=True)["model"]


def test_sigkill_then_resume_gives_identical_weights(workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    reference = tmp_path_factory.mktemp("reference")
    shutil.copytree(workdir, reference, dirs_exist_ok=True)
    dlpipe(reference, "train", "tabular", *OVERRIDES)

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


def test_torchrun_two_processes_match_one(workdir: Path, tabular_artifacts: Path) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "--no-python"]
    proc = subprocess.run([*cmd, DLPIPE, "train", "tabular"], cwd=workdir, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    dlpipe(workdir, "evaluate", "tabular")
    ddp = json.loads((workdir / "metrics" / "tabular.json").read_text())
    single = json.loads((tabular_artifacts.parents[1] / "metrics" / "tabular.json").read_text())
    assert abs(ddp["accuracy"] - single["accuracy"]) <= 0.03 and ddp["roc_auc"] >= 0.98, (ddp, single)

    import mlflow

    run_id = json.loads((workdir / "artifacts" / "tabular" / "run.json").read_text())["run_id"]
    assert mlflow.MlflowClient().get_run(run_id).data.tags["world_size"] == "2"


def test_diverging_loss_fails_the_run_and_keeps_the_checkpoint(workdir: Path) -> None:
    """A NaN/Inf loss mid-training stops with a clear error, the MLflow run is FAILED, the checkpoint stays."""
    from components.config import TrainConfig
    from components.train.loop import TrainingError
    from components.train.step import train

    art = workdir / "artifacts" / "tabular"
    good = {"epochs": 2, "model": {"hidden": [8]}, "early_stopping": {"enabled": False}}
    train(art / "data", art, TrainConfig.model_validate(good), "tabular", progress=False)
    before = (art / "checkpoint.pt").read_bytes()
    diverging = TrainConfig.model_validate({**good, "optimizer": "gd", "lr": 1e38, "epochs": 5})
    with pytest.raises(TrainingError, match="loss became"):
        train(art / "data", art, diverging, "tabular", progress=False)
    assert (art / "checkpoint.pt").read_bytes() == before

    import mlflow

    run_id = json.loads((art / "run.json").read_text())["run_id"]
    assert mlflow.MlflowClient().get_run(run_id).info.status == "FAILED"
