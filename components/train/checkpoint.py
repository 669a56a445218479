"""Load a trained model back from its checkpoint (checkpoint.pt, written by the train step): evaluation, export
and the experiments read it through here. Loaded with weights_only=True, so a checkpoint can hold no code."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from components.config import TrainConfig
from components.core.contract import TaskMeta, parse_meta
from components.core.io import read_checkpoint
from components.train.step import build_for

CHECKPOINT = "checkpoint.pt"


def load_trained(model_dir: Path) -> tuple[nn.Module, TaskMeta]:
    """Rebuild the trained model (best weights) from checkpoint.pt, with the task contract it was trained on."""
    path = Path(model_dir) / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the train step first")
    ckpt = read_checkpoint(path, needs=("meta", "model_config", "best_model"))
    meta = parse_meta(ckpt["meta"], str(path))
    model = build_for(meta, TrainConfig(model=ckpt["model_config"]))
    model.load_state_dict(ckpt["best_model"])
    return model.eval(), meta
