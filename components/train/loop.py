"""The generic training loop every task reuses.

The loop owns: batching (batches.py), optimizer, warm-up and learning-rate schedule (optim.py), L1 penalty,
mixed precision (precision.py), gradient clipping, per-layer gradient-norm diagnostics, early stopping with
best-weight restore, DistributedDataParallel under torchrun, and a resumable checkpoint (model, optimizer,
scheduler, scaler, epoch, step, every RNG state, config) written atomically at most every
`checkpoint_interval_s` and at the end. Losses and metrics come from the task."""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from components.config import EarlyStoppingConfig, TrainConfig
from components.core.errors import DlpipeError
from components.core.io import atomic_write, read_checkpoint
from components.core.tokens import IGNORE
from components.train import distributed, optim
from components.train.batches import Batches, predict
from components.train.precision import resolve_amp

LossFn = Callable[[Tensor, Tensor], Tensor]
MetricFn = Callable[[Tensor, Tensor], dict[str, float]]
LogFn = Callable[[dict[str, float], int], None]
log = logging.getLogger(__name__)
DEFAULT_THREADS = torch.get_num_threads()  # torch's own, before any run set one


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


class _Run:
    """What one `fit` trains with: the batches and the validation split on the device, the network the forward
    pass calls (the model, under DDP and/or torch.compile), the optimizer with its warm-up, schedule and fp16
    scaler, the layers whose gradient norms are tracked, and the shuffle generator."""

    def __init__(
        self,
        model: nn.Module,
        train: tuple[Tensor, Tensor],
        val: tuple[Tensor, Tensor],
        cfg: TrainConfig,
        device: torch.device,
        param_groups: list[dict[str, Any]] | None,
    ) -> None:
        if len(train[0]) == 0 or len(val[0]) == 0:
            raise TrainingError("the training or validation split is empty")
        self.amp = resolve_amp(cfg.amp, device)
        if self.amp == "fp16" and device.type != "cuda":
            raise TrainingError("train.amp: fp16 needs a CUDA device; use bf16 on CPU")
        batch = len(train[0]) if cfg.batch_size == "full" else min(cfg.batch_size, len(train[0]))
        self.cfg, self.device, self.model = cfg, device, model
        model.to(device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        self.batches = Batches(*train, batch, device, cfg)
        self.x_val, self.y_val = (t.to(device) for t in val)
        self.optimizer = optim.make_optimizer(param_groups or model.parameters(), cfg, model)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]  # the configured lrs: onecycle overwrites them
        self.scheduler = optim.make_scheduler(self.optimizer, cfg, self.batches.steps())
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp == "fp16")
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.amp)
        self.net: nn.Module = DistributedDataParallel(model) if distributed.active() else model
        self.targets_only = getattr(model, "scores_targets_only", False)  # a masked LM: logits where a target is
        if cfg.compile:
            self.net = torch.compile(self.net)
        self.layers = [
            (n.removesuffix(".weight"), p) for n, p in model.named_parameters() if p.dim() > 1 and p.requires_grad
        ]
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.warmup_steps = cfg.scheduler.warmup_epochs * self.batches.steps()
        self.sample_every = max(1, self.batches.steps() // cfg.gradients.samples_per_epoch)  # a few steps per epoch

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else contextlib.nullcontext()


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
    device = _device(cfg)
    main = distributed.is_main()
    run = _Run(model, train, val, cfg, device, param_groups)
    es = cfg.early_stopping
    state: dict[str, Any] = {"epoch": 0, "step": 0, "best_score": math.inf, "best_epoch": 0, "bad_epochs": 0}
    state |= {"history": [], "warnings": []}
    best_weights = copy.deepcopy(model.state_dict())
    if resume and checkpoint is not None and Path(checkpoint).is_file():
        best_weights, state = _resume(checkpoint, run)

    bar = tqdm(total=cfg.epochs, initial=state["epoch"], desc="train", unit="epoch", disable=not (progress and main))
    stopped_early = False
    last_save = time.monotonic()
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        started = time.perf_counter()
        train_loss, grad_norms = _train_epoch(run, loss_fn, epoch, state, transform)
        with run.autocast():  # validation in the training's precision: bf16 where amp is on
            val = evaluate_loss(model, loss_fn, run.x_val, run.y_val, metric_fn)
        metrics = {"train_loss": train_loss, **distributed.from_main(val), "lr": run.optimizer.param_groups[0]["lr"]}
        if grad_norms is not None:
            metrics |= {f"grad_norm/{name}": v for (name, _), v in zip(run.layers, grad_norms, strict=True)}
            _warn_gradients(run.layers, grad_norms, cfg.gradients, state["warnings"], epoch, bar)
        metrics["epoch_seconds"] = time.perf_counter() - started
        best_weights = _keep_best(model, es, metrics, epoch, state, best_weights)
        optim.step_per_epoch(run.scheduler, cfg, metrics[es.monitor], epoch)
        _record(state, metrics, epoch, bar, log_metrics if main else None)

        stopped_early = es.enabled and state["bad_epochs"] >= es.patience
        finished = stopped_early or epoch == cfg.epochs
        if checkpoint is not None and main and (finished or time.monotonic() - last_save >= cfg.checkpoint_interval_s):
            save_checkpoint(
                checkpoint, model, run.optimizer, run.scheduler, run.scaler, best_weights, state, run.gen, cfg, extra
            )
            last_save = time.monotonic()
        if stopped_early:
            break
    bar.close()

    model.load_state_dict(best_weights)
    return FitResult(
        best_epoch=state["best_epoch"],
        best_score=_sign(es) * state["best_score"],
        epochs_run=state["epoch"],
        stopped_early=stopped_early,
        history=state["history"],
        gradient_warnings=state["warnings"],
    )


def _device(cfg: TrainConfig) -> torch.device:
    """train.device, or under torchrun this rank's device; on CPU train.threads, else torch's own thread count
    (a process that trains several tasks, as the tests and the Python API do, trains each as `dlpipe train` would)."""
    device = resolve_device(cfg.device)
    device = distributed.init(device.type) or device
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads if cfg.threads is not None else DEFAULT_THREADS)
    return device


def _resume(path: Path, run: _Run) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Restore model, optimizer, scheduler, scaler and every RNG from checkpoint `path`; return its best
    weights and loop state.

    Loaded onto the CPU: the RNG states must be CPU byte tensors (torch.set_rng_state refuses any other), and
    load_state_dict copies weights and optimizer state onto the model's device anyway."""
    ckpt = read_checkpoint(path, needs=("model", "optimizer", "scaler", "rng", "best_model", "loop", "config"))
    _check_epochs(ckpt, run.cfg, path)
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    if run.scheduler is not None:
        run.scheduler.load_state_dict(ckpt["scheduler"])
    run.scaler.load_state_dict(ckpt["scaler"])
    _set_rng_state(ckpt["rng"], run.gen)
    return ckpt["best_model"], ckpt["loop"]


EPOCH_SHAPED = ("cosine", "onecycle")  # schedules whose shape is set by train.epochs


def _check_epochs(ckpt: dict[str, Any], cfg: TrainConfig, path: Path) -> None:
    """A resume may change train.epochs only when the schedule does not depend on it, and never to fewer
    epochs than the checkpoint already ran."""
    done, before = ckpt["loop"]["epoch"], ckpt["config"]["epochs"]
    if done > cfg.epochs:
        raise TrainingError(f"{path} is at epoch {done}, past train.epochs={cfg.epochs}: resume with more epochs")
    if cfg.epochs != before and cfg.scheduler.name in EPOCH_SHAPED:
        raise TrainingError(
            f"{path} was trained with train.epochs={before}, not {cfg.epochs}, and train.scheduler {cfg.scheduler.name}"
            f" is shaped by the epoch count: resume with train.epochs={before}, or train afresh without --resume"
        )


def _train_epoch(
    run: _Run, loss_fn: LossFn, epoch: int, state: dict[str, Any], transform: Callable[[Tensor], Tensor] | None
) -> tuple[float, list[float] | None]:
    """One pass over the training batches: the mean loss over all ranks and, with train.gradients.track,
    each layer's mean gradient norm over the sampled steps."""
    cfg, device = run.cfg, run.device
    run.model.train()
    loss_total, rows = torch.zeros((), device=device), 0
    grad_sum, sampled = torch.zeros(len(run.layers), device=device), 0
    for i, (xb, yb) in enumerate(run.batches.epoch(epoch, run.gen)):
        if transform is not None:
            xb = transform(xb)
        if cfg.channels_last and xb.dim() == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        if state["step"] < run.warmup_steps:
            optim.warm_up(run.optimizer, run.base_lrs, state["step"], run.warmup_steps)
        with run.autocast():
            out = run.net(xb, scored=yb != IGNORE) if run.targets_only else run.net(xb)
            loss = loss_fn(out.float() if run.amp_dtype else out, yb)
        if cfg.l1 > 0:
            loss = loss + cfg.l1 * l1_penalty(run.model)
        norms = _step(run, loss, track=cfg.gradients.track and i % run.sample_every == 0)
        optim.step_per_batch(run.scheduler, cfg, warming_up=state["step"] < run.warmup_steps)
        if norms is not None:
            grad_sum += norms
            sampled += 1
        state["step"] += 1
        loss_total += loss.detach() * len(xb)
        rows += len(xb)
    totals = distributed.all_sum(torch.stack([loss_total, torch.tensor(float(rows), device=device)]))
    train_loss = float(totals[0] / totals[1])
    if not math.isfinite(train_loss):
        raise TrainingError(f"loss became {train_loss} at epoch {epoch}; stopped, last good checkpoint kept")
    return train_loss, (grad_sum / sampled).tolist() if cfg.gradients.track else None


def _step(run: _Run, loss: Tensor, track: bool) -> Tensor | None:
    """Backward and one optimizer step. fp16 unscales the gradients when they are read or clipped. With `track`,
    the (L,) per-layer gradient norms of the unclipped gradients."""
    grads, optimizer, scaler = run.cfg.gradients, run.optimizer, run.scaler
    optimizer.zero_grad(set_to_none=True)
    if scaler.is_enabled():
        scaler.scale(loss).backward()
        if track or grads.clip_norm or grads.clip_value:
            scaler.unscale_(optimizer)
    else:
        loss.backward()
    norms = torch.stack(torch._foreach_norm([p.grad for _, p in run.layers])) if track else None
    if grads.clip_norm:
        nn.utils.clip_grad_norm_(run.model.parameters(), grads.clip_norm)
    if grads.clip_value:
        nn.utils.clip_grad_value_(run.model.parameters(), grads.clip_value)
    if scaler.is_enabled():
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return norms


def _sign(es: EarlyStoppingConfig) -> float:
    """Early-stopping scores are minimised: +1 for mode min, -1 for mode max."""
    return 1.0 if es.mode == "min" else -1.0


def _keep_best(
    model: nn.Module,
    es: EarlyStoppingConfig,
    metrics: dict[str, float],
    epoch: int,
    state: dict[str, Any],
    best_weights: dict[str, Tensor],
) -> dict[str, Tensor]:
    """Early-stopping bookkeeping for one epoch: update best score, best epoch and the run of bad epochs in
    `state`; return the weights that are the result so far (with early stopping off, the last epoch's)."""
    if es.monitor not in metrics:
        raise TrainingError(f"train.early_stopping.monitor: {es.monitor!r} is not one of {sorted(metrics)}")
    score = _sign(es) * metrics[es.monitor]
    if not es.enabled:
        state.update(best_score=score, best_epoch=epoch)
        return model.state_dict()
    if score < state["best_score"] - es.min_delta or epoch == 1:
        state.update(best_score=score, best_epoch=epoch, bad_epochs=0)
        return copy.deepcopy(model.state_dict())
    state["bad_epochs"] += 1
    return best_weights


def _record(state: dict[str, Any], metrics: dict[str, float], epoch: int, bar: Any, log_metrics: LogFn | None) -> None:
    """The epoch's history row (epoch, then the metrics), the tracker's log and the progress bar."""
    state["epoch"] = epoch
    state["history"].append({"epoch": epoch, **metrics})
    if log_metrics is not None:
        log_metrics(metrics, epoch)
    bar.update(1)
    bar.set_postfix({k: f"{metrics[k]:.4f}" for k in ("train_loss", "val_loss", "val_accuracy") if k in metrics})


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
def evaluate_loss(
    model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor, metric_fn: MetricFn | None
) -> dict[str, float]:
    """Validation loss (and metrics) of `model` on (x, y), from float32 outputs whatever precision the forward ran in:
    `fit` calls it under the training's autocast (Fashion-MNIST's 5,000 validation images in bf16: 2.6-3.1 s instead
    of 5.0-5.4 s on one thread, loss 0.27004 against 0.26993)."""
    model.eval()
    out = predict(model, x, pad_id=getattr(model, "pad_id", None)).float()
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
