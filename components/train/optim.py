"""The optimizer and its learning-rate schedule for the training loop (components/train/loop.py): which
optimizer and how L2 enters it, the schedule after warm-up, the linear per-step warm-up, and when the
schedule steps (onecycle per batch, the others per epoch)."""

from __future__ import annotations

from typing import Any

import torch

from components.config import TrainConfig


def make_optimizer(params: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    """gd = plain SGD step, momentum = SGD with (Nesterov) momentum. L2 is weight decay: coupled (added to
    the gradient) for all but adamw, where it is decoupled (applied to the weights directly)."""
    if cfg.optimizer == "gd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.l2)
    if cfg.optimizer == "momentum":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.l2)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.l2)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.l2)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.l2)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> Any:
    """The schedule after warm-up; onecycle steps per batch, the others per epoch."""
    s, sched = cfg.scheduler, torch.optim.lr_scheduler
    if s.name == "step":
        return sched.StepLR(optimizer, step_size=s.step_size, gamma=s.gamma)
    if s.name == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=max(1, cfg.epochs - s.warmup_epochs), eta_min=s.min_lr)
    if s.name == "onecycle":
        max_lr = [group["lr"] for group in optimizer.param_groups]  # per group: a lower backbone lr stays lower
        return sched.OneCycleLR(optimizer, max_lr=max_lr, total_steps=cfg.epochs * steps_per_epoch)
    if s.name == "plateau":
        mode = cfg.early_stopping.mode
        return sched.ReduceLROnPlateau(optimizer, mode=mode, factor=s.factor, patience=s.patience)
    return None


def warm_up(optimizer: torch.optim.Optimizer, base_lrs: list[float], step: int, warmup_steps: int) -> None:
    """Linear warm-up: at `step` (from 0) each group's lr is its base lr x (step + 1) / warmup_steps."""
    for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
        group["lr"] = base * (step + 1) / warmup_steps


def step_per_batch(scheduler: Any, cfg: TrainConfig) -> None:
    """The schedule step after each optimizer step: onecycle's."""
    if cfg.scheduler.name == "onecycle":
        scheduler.step()


def step_per_epoch(scheduler: Any, cfg: TrainConfig, monitored: float, epoch: int) -> None:
    """The per-epoch schedule step after `epoch`: plateau on the monitored metric; step and cosine once warm-up
    is over (onecycle steps per batch)."""
    name = cfg.scheduler.name
    if name == "plateau":
        scheduler.step(monitored)
    elif scheduler is not None and name != "onecycle" and epoch > cfg.scheduler.warmup_epochs:
        scheduler.step()
