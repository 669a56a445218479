"""Distributed training with the project's own command, `torchrun ... dlpipe train`: on this machine (one node,
N processes) here, and as a Kubeflow Trainer TrainJob on a cluster (components/train/trainjob.py). The training code
is the same train step; torchrun only sets RANK / WORLD_SIZE (components/train/distributed.py)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from components.config import TrainConfig
from components.core.errors import DlpipeError
from components.core.io import read_json, write_json

CONFIG_FILE = "train_config.json"


def _exe(name: str) -> str:
    """The console script beside this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else name


def train_command(task: str, data: Path, out: Path, augment: Path, resume: bool = False) -> list[str]:
    """`dlpipe train` on explicit folders, reading the resolved config that `write_config` left in `out`; with
    `resume`, from the checkpoint an earlier attempt left in `out` (if any)."""
    return [
        "dlpipe", "train", task, "--config", str(Path(out) / CONFIG_FILE),
        "--data", str(data), "--out", str(out), "--augment", str(augment), *(["--resume"] if resume else []),
    ]  # fmt: skip


def write_config(cfg: TrainConfig, out: Path) -> Path:
    """The fully resolved train config (params.yaml + overrides + tuning) for the ranks to read."""
    return write_json(Path(out) / CONFIG_FILE, cfg.model_dump(mode="json"))


def torchrun_train(
    data: Path, out: Path, cfg: TrainConfig, task: str, augment: Path, nproc_per_node: int, resume: bool = False
) -> dict[str, Any]:
    """Train with DDP in `nproc_per_node` processes on this machine; return rank 0's train.json summary."""
    write_config(cfg, out)
    # torchrun's log folder (the ranks' error files) is one of the run's own: by default it makes one in $TMPDIR
    # (torchelastic_*) and never removes it
    with tempfile.TemporaryDirectory(prefix="dlpipe-torchrun-") as logs:
        cmd = [_exe("torchrun"), "--standalone", f"--nproc-per-node={nproc_per_node}", f"--log-dir={logs}"]
        cmd += ["--no-python", _exe("dlpipe"), *train_command(task, data, out, augment, resume)[1:]]
        proc = subprocess.run(cmd)
    if proc.returncode != 0:
        raise DlpipeError(
            f"torchrun ({nproc_per_node} processes) training {task} failed with exit code {proc.returncode}"
        )
    return read_json(Path(out) / "train.json")
