"""Train step: build the task's model, run the generic loop, write checkpoint + history, track in MLflow."""

from __future__ import annotations

import contextlib
import csv
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from components.config import TrainConfig, flatten
from components.core import tracking
from components.core.contract import TaskMeta, load_meta
from components.core.io import atomic_write, read_json, write_json
from components.core.secrets import mask
from components.data.augment import POLICY, PREVIEW, load_transform
from components.data.splits import load_split
from components.train import distributed, objectives, transfer
from components.train.loop import FitResult, fit, resolve_device, seed_everything
from components.train.precision import resolve_amp
from models import build_model, input_kwargs, summarize


def build_for(meta: TaskMeta, cfg: TrainConfig) -> nn.Module:
    """The task's model as `cfg.model` describes it, sized for the task's input and output."""
    return build_model(
        cfg.model.name,
        out_features=objectives.output_size(meta),
        **input_kwargs(meta, cfg.model.name),
        **cfg.model.kwargs(),
    )


def train(
    data_dir: Path,
    out_dir: Path,
    cfg: TrainConfig,
    task: str,
    resume: bool = False,
    progress: bool = True,
    report: Callable[[int, dict[str, float]], None] | None = None,
    parent_run_id: str | None = None,
    augment_dir: Path | None = None,
) -> dict[str, Any]:
    """Train on `data_dir` (prepare's output) into `out_dir`: checkpoint.pt, history.csv, run.json.

    `augment_dir` holds the augment step's policy, applied to every training batch on the device;
    `cfg.init_from` starts the backbone from earlier weights (components/train/transfer.py).

    Under torchrun every rank trains; rank 0 alone tracks in MLflow and writes files. With `resume`,
    training continues from checkpoint.pt and the interrupted MLflow run is closed as KILLED and linked.
    `report(epoch, metrics)` sees every epoch's metrics (tuning reports them to Optuna, which may prune by
    raising); `parent_run_id` nests the MLflow run under a tuning study's run.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    meta = load_meta(data_dir)
    objective = meta.objective
    loss = objectives.loss_fn(objective, cfg.loss, cfg.label_smoothing)
    (x_tr, y_tr), (x_va, y_va) = load_split(data_dir, "train"), load_split(data_dir, "val")
    to_xy = lambda x, y: (torch.as_tensor(x), objectives.targets(y, objective))  # noqa: E731

    seed_everything(cfg.seed)
    model = build_for(meta, cfg)
    init_embeddings(model, cfg, data_dir)
    param_groups, transferred = transfer.apply(model, cfg)
    transform = load_transform(augment_dir, meta)
    main = distributed.is_main()
    mlflow = tracking.configure()
    previous = _interrupted_run(out_dir) if resume and main else None
    run = (
        tracking.start_task_run(
            task, out_dir, f"{task}-train", system_metrics=parent_run_id is None, parent_run_id=parent_run_id
        )
        if main
        else contextlib.nullcontext()
    )
    try:
        with run:
            if main:
                _log_inputs(mlflow, cfg, task, meta, model, previous, transferred, augment_dir)
            result = fit(
                model,
                loss,
                to_xy(x_tr, y_tr),
                to_xy(x_va, y_va),
                cfg,
                metric_fn=objectives.metric_fn(objective),
                checkpoint=out_dir / "checkpoint.pt",
                extra={"model_config": cfg.model.model_dump(), "meta": meta.model_dump(mode="json")},
                resume=resume,
                log_metrics=_epoch_logger(mlflow, report) if main else None,
                progress=progress,
                transform=transform,
                param_groups=param_groups,
            )
            summary = _summary(result)
            if main:
                _log_outputs(mlflow, out_dir, result, summary)
    finally:
        distributed.cleanup()
    return summary


def retried_train(
    data_dir: Path,
    out_dir: Path,
    cfg: TrainConfig,
    task: str,
    checkpoint_dir: Path | None,
    augment_dir: Path | None = None,
    gpus: int = 1,
) -> dict[str, Any]:
    """The train step of a pipeline that retries it (Kubeflow): with `checkpoint_dir` on storage that outlives
    the pod (a PVC), training runs there and resumes from the checkpoint a failed attempt left (its MLflow run is
    closed KILLED and linked); the outputs are then copied into `out_dir`. Without one, every attempt starts over.
    `gpus` > 1 trains with DDP over that many local processes (torchrun)."""
    from components.train.launch import torchrun_train

    work = Path(checkpoint_dir) if checkpoint_dir is not None else Path(out_dir)
    resume = checkpoint_dir is not None
    if gpus > 1:
        summary = torchrun_train(data_dir, work, cfg, task, augment_dir, nproc_per_node=gpus, resume=resume)
    else:
        summary = train(data_dir, work, cfg, task, resume=resume, progress=False, augment_dir=augment_dir)
    if work != Path(out_dir):
        shutil.copytree(work, out_dir, dirs_exist_ok=True)
    return summary


def _log_inputs(
    mlflow: Any,
    cfg: TrainConfig,
    task: str,
    meta: TaskMeta,
    model: nn.Module,
    previous: str | None,
    transferred: dict[str, Any],
    augment_dir: Path | None,
) -> None:
    """What the run starts from, in MLflow: flattened config, data hash, model size and summary, resume and
    transfer tags, the augment policy and its preview."""
    params = {**flatten(cfg), "task": task, "dataset": meta.dataset, "objective": meta.objective}
    mlflow.log_params(mask(params))
    mlflow.set_tags(
        {
            "data_sha256": meta.data_sha256,
            "n_parameters": str(n_parameters(model)),
            "world_size": str(distributed.world_size()),
            "amp_resolved": resolve_amp(cfg.amp, resolve_device(cfg.device)),  # what `auto` became on this machine
            **({"resumed_from": previous} if previous else {}),
            **{f"transfer.{k}": str(v) for k, v in transferred.items()},
        }
    )
    mlflow.log_dict(mask(cfg.model_dump()), "config.json")
    summary_text = summarize(model, meta.input.shape, meta.input.dtype)
    mlflow.log_text(summary_text, "model_summary.txt")
    for name in (POLICY, PREVIEW):
        if augment_dir is not None and (Path(augment_dir) / name).is_file():
            mlflow.log_artifact(str(Path(augment_dir) / name), artifact_path="augment")


def _summary(result: FitResult) -> dict[str, Any]:
    """train.json: best epoch and score, epochs run, early stop, gradient warnings, the best epoch's metrics."""
    return {
        "best_epoch": result.best_epoch,
        "best_score": result.best_score,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "gradient_warnings": result.gradient_warnings,
        "best_metrics": result.history[result.best_epoch - 1],
    }


def _log_outputs(mlflow: Any, out_dir: Path, result: FitResult, summary: dict[str, Any]) -> None:
    """history.csv and train.json in `out_dir`; best epoch, warnings, history and checkpoint in MLflow."""
    mlflow.log_metrics({"best_epoch": result.best_epoch, "epochs_run": result.epochs_run})
    if result.gradient_warnings:
        mlflow.set_tag("gradient_warnings", "; ".join(result.gradient_warnings)[:5000])
    write_history(out_dir / "history.csv", result.history)
    mlflow.log_artifact(str(out_dir / "history.csv"))
    # The registry holds ONNX only; init_from models:/... fine-tunes from this checkpoint.
    mlflow.log_artifact(str(out_dir / "checkpoint.pt"), artifact_path=transfer.CHECKPOINT_ARTIFACT)
    write_json(out_dir / "train.json", summary)


def init_embeddings(model: nn.Module, cfg: TrainConfig, data_dir: Path) -> None:
    """model.embeddings word2vec / word2vec_frozen: start the embedding table from the prepare step's
    word2vec.npy (prepare.<task>.text.word2vec_dim must equal model.embedding_dim)."""
    how = getattr(cfg.model, "embeddings", "trainable")
    if how == "trainable":
        return
    path = Path(data_dir) / "word2vec.npy"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: set prepare.<task>.text.word2vec_dim to train the vectors")
    import numpy as np

    model.load_embeddings(torch.as_tensor(np.load(path)), freeze=how == "word2vec_frozen")


def _epoch_logger(mlflow: Any, report: Callable[[int, dict[str, float]], None] | None) -> Callable:
    def log(metrics: dict[str, float], epoch: int) -> None:
        mlflow.log_metrics(metrics, step=epoch)
        if report is not None:
            report(epoch, metrics)

    return log


def _interrupted_run(out_dir: Path) -> str | None:
    """Close the run a killed training left RUNNING (status KILLED); return its id for the new run's tag."""
    path = Path(out_dir) / "run.json"
    if not path.is_file():
        return None
    run_id = read_json(path)["run_id"]
    client = tracking.configure().MlflowClient()
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, status="KILLED")
    return run_id


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(history[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows({k: round(v, 6) for k, v in row.items()} for row in history)

    atomic_write(path, write)
