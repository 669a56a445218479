"""The generic training loop every task reuses.

Small datasets live on the device as tensors and are batched by index (no DataLoader overhead).
The loop owns: optimizer, L1 penalty, early stopping with best-weight restore, a resumable
checkpoint (model, optimizer, epoch, RNG states, config) written atomically (at most every
`checkpoint_interval_s`, and at the end), and a
progress bar. Losses and metrics come from the task; the loop knows nothing about data shapes.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from components.config import TrainConfig
from components.errors import DlpipeError
from components.io import atomic_write

LossFn = Callable[[Tensor, Tensor], Tensor]
MetricFn = Callable[[Tensor, Tensor], dict[str, float]]
LogFn = Callable[[dict[str, float], int], None]


class TrainingError(DlpipeError):
    """Training cannot go on (e.g. the loss became NaN); the last good checkpoint is kept."""


@dataclass
class FitResult:
    best_epoch: int
    best_score: float
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("train.device is 'cuda' but no CUDA device is usable here")
    return torch.device(name)


def make_optimizer(params: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    """gd = plain SGD step, momentum = SGD with (Nesterov) momentum; L2 is coupled weight decay."""
    if cfg.optimizer == "gd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.l2)
    if cfg.optimizer == "momentum":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.l2)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.l2)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.l2)


def l1_penalty(model: nn.Module) -> Tensor:
    """Sum of |w| over weight matrices (biases and norm scales excluded)."""
    return sum(p.abs().sum() for p in model.parameters() if p.dim() > 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _rng_state(gen: torch.Generator) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "shuffle": gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    gen.set_state(state["shuffle"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor],
    cfg: TrainConfig,
    *,
    metric_fn: MetricFn | None = None,
    checkpoint: Path | None = None,
    extra: dict[str, Any] | None = None,
    resume: bool = False,
    log: LogFn | None = None,
    progress: bool = True,
) -> FitResult:
    """Train `model` on (x, y) tensors; return the history and leave the best weights in `model`.

    `extra` is stored in the checkpoint as is (e.g. the model's config, so it can be rebuilt).
    """
    device = resolve_device(cfg.device)
    x_train, y_train = (t.to(device) for t in train)
    x_val, y_val = (t.to(device) for t in val)
    n = len(x_train)
    if n == 0 or len(x_val) == 0:
        raise TrainingError("the training or validation split is empty")
    batch = n if cfg.batch_size == "full" else min(cfg.batch_size, n)

    model.to(device)
    optimizer = make_optimizer(model.parameters(), cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    es = cfg.early_stopping
    sign = 1.0 if es.mode == "min" else -1.0
    state: dict[str, Any] = {"epoch": 0, "best_score": math.inf, "best_epoch": 0, "bad_epochs": 0, "history": []}
    best_weights = copy.deepcopy(model.state_dict())

    if resume and checkpoint is not None and Path(checkpoint).is_file():
        ckpt = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        best_weights = ckpt["best_model"]
        state = ckpt["loop"]
        _set_rng_state(ckpt["rng"], gen)

    last_save = time.monotonic()
    bar = tqdm(total=cfg.epochs, initial=state["epoch"], desc="train", unit="epoch", disable=not progress)
    stopped_early = False
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=gen).to(device)
        total = torch.zeros((), device=device)
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            xb, yb = x_train[idx], y_train[idx]
            loss = loss_fn(model(xb), yb)
            if cfg.l1 > 0:
                loss = loss + cfg.l1 * l1_penalty(model)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(idx)
        train_loss = float(total) / n
        if not math.isfinite(train_loss):
            raise TrainingError(f"loss became {train_loss} at epoch {epoch}; last good checkpoint kept")

        metrics = {"train_loss": train_loss, **evaluate_loss(model, loss_fn, x_val, y_val, metric_fn)}
        metrics["epoch_seconds"] = time.perf_counter() - started
        if es.monitor not in metrics:
            raise TrainingError(f"train.early_stopping.monitor: {es.monitor!r} is not one of {sorted(metrics)}")
        score = sign * metrics[es.monitor]
        if not es.enabled:  # the last epoch's weights are the result
            state.update(best_score=score, best_epoch=epoch)
            best_weights = model.state_dict()
        elif score < state["best_score"] - es.min_delta or epoch == 1:
            state.update(best_score=score, best_epoch=epoch, bad_epochs=0)
            best_weights = copy.deepcopy(model.state_dict())
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        state["history"].append({"epoch": epoch, **metrics})
        if log is not None:
            log(metrics, epoch)
        bar.update(1)
        bar.set_postfix({k: f"{v:.4f}" for k, v in metrics.items() if k != "epoch_seconds"})

        stopped_early = es.enabled and state["bad_epochs"] >= es.patience
        finished = stopped_early or epoch == cfg.epochs
        if checkpoint is not None and (finished or time.monotonic() - last_save >= cfg.checkpoint_interval_s):
            save_checkpoint(checkpoint, model, optimizer, best_weights, state, gen, cfg, extra)
            last_save = time.monotonic()
        if stopped_early:
            break
    bar.close()

    model.load_state_dict(best_weights)
    return FitResult(
        best_epoch=state["best_epoch"],
        best_score=sign * state["best_score"],
        epochs_run=state["epoch"],
        stopped_early=stopped_early,
        history=state["history"],
    )


@torch.no_grad()
def evaluate_loss(
    model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor, metric_fn: MetricFn | None
) -> dict[str, float]:
    model.eval()
    out = model(x)
    metrics = {"val_loss": float(loss_fn(out, y))}
    if metric_fn is not None:
        metrics.update({f"val_{k}": v for k, v in metric_fn(out, y).items()})
    return metrics


def save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    best_weights: dict[str, Tensor],
    state: dict[str, Any],
    gen: torch.Generator,
    cfg: TrainConfig,
    extra: dict[str, Any] | None,
) -> None:
    payload = {
        "model": model.state_dict(),
        "best_model": best_weights,
        "optimizer": optimizer.state_dict(),
        "loop": state,
        "rng": _rng_state(gen),
        "config": cfg.model_dump(),
        **(extra or {}),
    }
    atomic_write(Path(path), lambda tmp: torch.save(payload, tmp))
