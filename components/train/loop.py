"""The generic training loop every task reuses.

Small datasets live on the device as tensors and are batched by index (no DataLoader overhead); large
ones stream through a DataLoader with pinned memory and workers. The loop owns: optimizer, warm-up and
learning-rate schedule, L1 penalty, mixed precision, gradient clipping, per-layer gradient-norm
diagnostics, early stopping with best-weight restore, DistributedDataParallel under torchrun, and a
resumable checkpoint (model, optimizer, scheduler, scaler, epoch, step, every RNG state, config) written
atomically at most every `checkpoint_interval_s` and at the end. Losses and metrics come from the task.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
from tqdm.auto import tqdm

from components.config import TrainConfig
from components.core.errors import DlpipeError
from components.core.io import atomic_write
from components.train import distributed

LossFn = Callable[[Tensor, Tensor], Tensor]
MetricFn = Callable[[Tensor, Tensor], dict[str, float]]
LogFn = Callable[[dict[str, float], int], None]
log = logging.getLogger(__name__)


class TrainingError(DlpipeError):
    """Training cannot go on (e.g. the loss became NaN); the last good checkpoint is kept."""


@dataclass
class FitResult:
    best_epoch: int
    best_score: float
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)
    gradient_warnings: list[str] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("train.device is 'cuda' but no CUDA device is usable here")
    return torch.device(name)


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


class Batches:
    """Yields (x, y) mini-batches on the device, in an order that is exact on resume and sharded under DDP."""

    def __init__(self, x: Tensor, y: Tensor, batch: int, device: torch.device, cfg: TrainConfig) -> None:
        self.n, self.batch, self.device = len(x), batch, device
        self.on_device = (x.nbytes + y.nbytes) / 2**20 <= cfg.device_data_max_mb
        self.x, self.y = (x.to(device), y.to(device)) if self.on_device else (x, y)
        self.sampler = None
        if distributed.active():
            self.sampler = DistributedSampler(
                range(self.n), distributed.world_size(), distributed.rank(), shuffle=True, seed=cfg.seed
            )
        self.workers, self.pin = cfg.num_workers, device.type == "cuda"
        self.cap = cfg.steps_per_epoch

    def steps(self) -> int:
        per_rank = len(self.sampler) if self.sampler is not None else self.n
        return len(self._starts(per_rank))

    def _starts(self, n: int) -> range:
        """Batch start offsets; a trailing batch of one row is dropped (batch norm cannot train on it).
        `steps_per_epoch` keeps the first batches of each epoch's fresh shuffle (a large corpus)."""
        end = n - 1 if self.batch > 1 and n % self.batch == 1 else n
        return range(0, end, self.batch)[: self.cap]

    def epoch(self, epoch: int, gen: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
            order = torch.tensor(list(self.sampler))
        else:
            order = torch.randperm(self.n, generator=gen)
        if self.on_device:
            order = order.to(self.device)
            for start in self._starts(len(order)):
                idx = order[start : start + self.batch]
                yield self.x[idx], self.y[idx]
            return
        chunks = [order[i : i + self.batch].tolist() for i in self._starts(len(order))]
        loader = DataLoader(
            TensorDataset(self.x, self.y), batch_sampler=chunks, num_workers=self.workers, pin_memory=self.pin
        )
        for xb, yb in loader:
            yield xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)


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
    log_metrics: LogFn | None = None,
    progress: bool = True,
    transform: Callable[[Tensor], Tensor] | None = None,
    param_groups: list[dict[str, Any]] | None = None,
) -> FitResult:
    """Train `model` on (x, y) tensors; return the history and leave the best weights in `model`.

    `transform` augments each training batch on the device. `param_groups` (optimizer groups, e.g. a
    frozen or slower backbone) default to all parameters. `extra` is stored in the checkpoint as is
    (e.g. the model's config, so it can be rebuilt). Under torchrun only rank 0 logs and saves.
    """
    device = resolve_device(cfg.device)
    device = distributed.init(device.type) or device
    if cfg.threads is not None and device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    main = distributed.is_main()
    if len(train[0]) == 0 or len(val[0]) == 0:
        raise TrainingError("the training or validation split is empty")
    if cfg.amp == "fp16" and device.type != "cuda":
        raise TrainingError("train.amp: fp16 needs a CUDA device; use bf16 on CPU")
    batch = len(train[0]) if cfg.batch_size == "full" else min(cfg.batch_size, len(train[0]))

    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    batches = Batches(*train, batch, device, cfg)
    x_val, y_val = (t.to(device) for t in val)
    optimizer = make_optimizer(param_groups or model.parameters(), cfg)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    scheduler = make_scheduler(optimizer, cfg, batches.steps())
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
    net: nn.Module = DistributedDataParallel(model) if distributed.active() else model
    if cfg.compile:
        net = torch.compile(net)
    layers = [(n.removesuffix(".weight"), p) for n, p in model.named_parameters() if p.dim() > 1 and p.requires_grad]
    gen = torch.Generator().manual_seed(cfg.seed)
    es, grads = cfg.early_stopping, cfg.gradients
    sign = 1.0 if es.mode == "min" else -1.0
    warmup_steps = cfg.scheduler.warmup_epochs * batches.steps()
    per_step_schedule = cfg.scheduler.name == "onecycle"
    sample_every = max(1, batches.steps() // grads.samples_per_epoch)  # gradient norms: a few steps per epoch
    state: dict[str, Any] = {"epoch": 0, "step": 0, "best_score": math.inf, "best_epoch": 0, "bad_epochs": 0}
    state |= {"history": [], "warnings": []}
    best_weights = copy.deepcopy(model.state_dict())

    if resume and checkpoint is not None and Path(checkpoint).is_file():
        ckpt = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        best_weights, state = ckpt["best_model"], ckpt["loop"]
        _set_rng_state(ckpt["rng"], gen)

    bar = tqdm(total=cfg.epochs, initial=state["epoch"], desc="train", unit="epoch", disable=not (progress and main))
    stopped_early = False
    last_save = time.monotonic()
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        started = time.perf_counter()
        model.train()
        loss_total, rows = torch.zeros((), device=device), 0
        grad_sum, sampled = torch.zeros(len(layers), device=device), 0
        for i, (xb, yb) in enumerate(batches.epoch(epoch, gen)):
            if transform is not None:
                xb = transform(xb)
            if cfg.channels_last and xb.dim() == 4:
                xb = xb.contiguous(memory_format=torch.channels_last)
            if state["step"] < warmup_steps:
                for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
                    group["lr"] = base * (state["step"] + 1) / warmup_steps
            with autocast():
                loss = loss_fn(net(xb).float() if amp_dtype else net(xb), yb)
            if cfg.l1 > 0:
                loss = loss + cfg.l1 * l1_penalty(model)
            optimizer.zero_grad(set_to_none=True)
            track = grads.track and i % sample_every == 0
            if scaler.is_enabled():
                scaler.scale(loss).backward()
                if track or grads.clip_norm or grads.clip_value:
                    scaler.unscale_(optimizer)
            else:
                loss.backward()
            if track:
                grad_sum += torch.stack(torch._foreach_norm([p.grad for _, p in layers]))
                sampled += 1
            if grads.clip_norm:
                nn.utils.clip_grad_norm_(model.parameters(), grads.clip_norm)
            if grads.clip_value:
                nn.utils.clip_grad_value_(model.parameters(), grads.clip_value)
            if scaler.is_enabled():
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            if per_step_schedule:
                scheduler.step()
            state["step"] += 1
            loss_total += loss.detach() * len(xb)
            rows += len(xb)
        totals = distributed.all_sum(torch.stack([loss_total, torch.tensor(float(rows), device=device)]))
        train_loss = float(totals[0] / totals[1])
        if not math.isfinite(train_loss):
            raise TrainingError(f"loss became {train_loss} at epoch {epoch}; stopped, last good checkpoint kept")

        metrics = {
            "train_loss": train_loss,
            **distributed.from_main(evaluate_loss(model, loss_fn, x_val, y_val, metric_fn)),
        }
        metrics["lr"] = optimizer.param_groups[0]["lr"]
        if grads.track:
            norms = (grad_sum / sampled).tolist()
            metrics |= {f"grad_norm/{name}": v for (name, _), v in zip(layers, norms, strict=True)}
            _warn_gradients(layers, norms, grads, state["warnings"], epoch, bar)
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
        if cfg.scheduler.name == "plateau":
            scheduler.step(metrics[es.monitor])
        elif scheduler is not None and cfg.scheduler.name != "onecycle" and epoch > cfg.scheduler.warmup_epochs:
            scheduler.step()
        state["epoch"] = epoch
        state["history"].append({"epoch": epoch, **metrics})
        if log_metrics is not None and main:
            log_metrics(metrics, epoch)
        bar.update(1)
        bar.set_postfix({k: f"{metrics[k]:.4f}" for k in ("train_loss", "val_loss", "val_accuracy") if k in metrics})

        stopped_early = es.enabled and state["bad_epochs"] >= es.patience
        finished = stopped_early or epoch == cfg.epochs
        if checkpoint is not None and main and (finished or time.monotonic() - last_save >= cfg.checkpoint_interval_s):
            save_checkpoint(checkpoint, model, optimizer, scheduler, scaler, best_weights, state, gen, cfg, extra)
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
        gradient_warnings=state["warnings"],
    )


def _warn_gradients(layers: list, norms: list[float], grads: Any, seen: list[str], epoch: int, bar: Any) -> None:
    """Warn once per layer and kind when a layer's mean gradient norm leaves [vanish_below, explode_above]."""
    for (name, _), norm in zip(layers, norms, strict=True):
        kind = "vanishing" if norm < grads.vanish_below else "exploding" if norm > grads.explode_above else None
        if kind is None or any(w.startswith(f"{kind}: {name} ") for w in seen):
            continue
        bound = grads.vanish_below if kind == "vanishing" else grads.explode_above
        message = f"{kind}: {name} gradient norm {norm:.2e} at epoch {epoch} (bound {bound:.0e})"
        seen.append(message)
        log.warning(message)
        bar.write(f"warning: {message}")


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, chunk: int = 1024) -> Tensor:
    """model(x) in chunks, so a whole split of images never holds every activation map at once."""
    return torch.cat([model(part) for part in x.split(chunk)]) if len(x) > chunk else model(x)


@torch.no_grad()
def evaluate_loss(
    model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor, metric_fn: MetricFn | None
) -> dict[str, float]:
    model.eval()
    out = predict(model, x)
    metrics = {"val_loss": float(loss_fn(out, y))}
    if metric_fn is not None:
        metrics.update({f"val_{k}": v for k, v in metric_fn(out, y).items()})
    return metrics


def save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
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
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict(),
        "loop": state,
        "rng": _rng_state(gen),
        "config": cfg.model_dump(),
        **(extra or {}),
    }
    atomic_write(Path(path), lambda tmp: torch.save(payload, tmp))
