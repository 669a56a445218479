"""Train step: build the task's model, run the generic loop, write checkpoint + history, track in MLflow."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch
from torch import nn

from components import objectives, tracking
from components.config import TrainConfig, flatten
from components.io import atomic_write, write_json
from components.prepare import load_meta, load_split
from components.trainer import fit, seed_everything
from models import build_model


def build_for(meta: dict[str, Any], cfg: TrainConfig) -> nn.Module:
    return build_model(
        cfg.model.name,
        in_features=len(meta["feature_names"]),
        out_features=objectives.output_size(meta),
        **cfg.model.kwargs(),
    )


def train(
    data_dir: Path, out_dir: Path, cfg: TrainConfig, task: str, resume: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Train on `data_dir` (prepare's output) into `out_dir`: checkpoint.pt, history.csv, run.json."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    meta = load_meta(data_dir)
    objective = meta["objective"]
    loss = objectives.loss_fn(objective, cfg.loss)
    (x_tr, y_tr), (x_va, y_va) = load_split(data_dir, "train"), load_split(data_dir, "val")
    to_xy = lambda x, y: (torch.as_tensor(x), objectives.targets(y, objective))  # noqa: E731

    seed_everything(cfg.seed)
    model = build_for(meta, cfg)
    mlflow = tracking.configure()
    with tracking.start_task_run(task, out_dir, run_name=f"{task}-train"):
        mlflow.log_params({**flatten(cfg), "task": task, "dataset": meta["dataset"], "objective": objective})
        mlflow.set_tags({"data_sha256": meta["data_sha256"], "n_parameters": str(n_parameters(model))})
        result = fit(
            model,
            loss,
            to_xy(x_tr, y_tr),
            to_xy(x_va, y_va),
            cfg,
            metric_fn=objectives.metric_fn(objective),
            checkpoint=out_dir / "checkpoint.pt",
            extra={"model_config": cfg.model.model_dump(), "meta": meta},
            resume=resume,
            log=lambda metrics, step: mlflow.log_metrics(metrics, step=step),
            progress=progress,
        )
        summary = {
            "best_epoch": result.best_epoch,
            "best_score": result.best_score,
            "epochs_run": result.epochs_run,
            "stopped_early": result.stopped_early,
        }
        mlflow.log_metrics({"best_epoch": result.best_epoch, "epochs_run": result.epochs_run})
        write_history(out_dir / "history.csv", result.history)
        mlflow.log_artifact(str(out_dir / "history.csv"))
    write_json(out_dir / "train.json", summary)
    return summary


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(history[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows({k: round(v, 6) for k, v in row.items()} for row in history)

    atomic_write(path, write)


def load_trained(model_dir: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the trained model (best weights) from checkpoint.pt, loaded with weights_only=True."""
    path = Path(model_dir) / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the train step first")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    cfg = TrainConfig(model=ckpt["model_config"])
    model = build_for(ckpt["meta"], cfg)
    model.load_state_dict(ckpt["best_model"])
    return model.eval(), ckpt["meta"]
