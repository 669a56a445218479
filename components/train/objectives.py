"""What a task's objective (binary, multiclass, regression) means for the network and its loss.

The model always emits raw scores; the loss applies the output activation in its stable form
(BCE/CE "with logits"), and `OutputHead` adds it for export and serving.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from components.config import ConfigError
from components.core.contract import (
    SEQUENCE_OBJECTIVES,
    TaskMeta,
)
from components.core.tokens import IGNORE

LOSSES = {
    "binary": ("bce", "mse"),
    "multiclass": ("cross_entropy", "mse"),
    "regression": ("mse", "mae", "huber"),
    "causal_lm": ("cross_entropy",),
    "masked_lm": ("cross_entropy",),
    "seq2seq": ("cross_entropy",),
}


def output_size(meta: TaskMeta) -> int:
    """Width of the model's last layer: 1 logit for binary, one per class, 1 value for regression (H values
    for a forecast of horizon H), the vocabulary for a token distribution per position."""
    if meta.objective in SEQUENCE_OBJECTIVES:
        return meta.model_inputs["vocab_size"]
    if meta.objective == "regression":
        return int(meta.horizon or 1)
    return len(meta.classes) if meta.objective == "multiclass" else 1


def targets(y: np.ndarray, objective: str) -> Tensor:
    """Targets in the dtype and shape the loss expects."""
    if objective == "multiclass" or objective in SEQUENCE_OBJECTIVES:
        return torch.as_tensor(y, dtype=torch.long)
    y = torch.as_tensor(y, dtype=torch.float32)
    return y.reshape(len(y), -1)  # [N, 1], or [N, H] for a forecast


def loss_fn(objective: str, name: str = "auto", label_smoothing: float = 0.0) -> Callable[[Tensor, Tensor], Tensor]:
    """The task's loss on raw model scores; `label_smoothing` pulls class targets toward uniform."""
    allowed = LOSSES[objective]
    name = allowed[0] if name == "auto" else name
    if name not in allowed:
        raise ConfigError(f"train.loss: {name!r} does not fit objective {objective!r}; use one of {allowed}")
    eps = label_smoothing
    if objective in SEQUENCE_OBJECTIVES:
        return lambda z, y: _token_loss(z, y, eps)
    if name == "bce":
        return lambda z, y: F.binary_cross_entropy_with_logits(z, y * (1 - eps) + 0.5 * eps)
    if name == "cross_entropy":
        return lambda z, y: F.cross_entropy(z, y, label_smoothing=eps)
    if name == "mae":
        return F.l1_loss
    if name == "huber":
        return F.huber_loss
    if objective == "binary":
        return lambda z, y: F.mse_loss(torch.sigmoid(z), y)
    if objective == "multiclass":
        return lambda z, y: F.mse_loss(torch.softmax(z, dim=1), F.one_hot(y, z.shape[1]).to(z.dtype))
    return F.mse_loss


def _token_loss(z: Tensor, y: Tensor, eps: float) -> Tensor:
    """Logits (B, T, V) vs target tokens (B, T), IGNORE positions (padding, unmasked tokens) left out; or (N, V)
    when the model scored only the N positions with a target (a masked LM in training, models/transformer)."""
    if z.dim() == 2:
        return F.cross_entropy(z, y[y != IGNORE], label_smoothing=eps)
    return F.cross_entropy(z.flatten(0, 1), y.flatten(), ignore_index=IGNORE, label_smoothing=eps)


def metric_fn(objective: str) -> Callable[[Tensor, Tensor], dict[str, float]] | None:
    """Per-epoch validation metric beside the loss (accuracy for classifiers)."""
    if objective == "binary":
        return lambda z, y: {"accuracy": float(((z > 0).float() == y).float().mean())}
    if objective == "multiclass":
        return lambda z, y: {"accuracy": float((z.argmax(1) == y).float().mean())}
    if objective in SEQUENCE_OBJECTIVES:
        return sequence_metrics
    return None


def sequence_metrics(z: Tensor, y: Tensor) -> dict[str, float]:
    """Next-token accuracy over real positions, perplexity exp(loss); seq2seq adds teacher-forced exact match."""
    real = y != IGNORE  # (B, T)
    right = (z.argmax(-1) == y) & real
    loss = F.cross_entropy(z.flatten(0, 1), y.flatten(), ignore_index=IGNORE)
    scores = {"accuracy": float(right.sum() / real.sum()), "perplexity": float(torch.exp(loss))}
    if not bool(real.all()):  # padded targets: a sequence counts when every real token is right
        scores["exact_match"] = float((right | ~real).all(dim=1).float().mean())
    return scores


class OutputHead(nn.Module):
    """Model + output activation, as exported: class probabilities (B, C), or values in raw units (B, 1 or H)."""

    def __init__(self, model: nn.Module, meta: TaskMeta) -> None:
        super().__init__()
        self.model = model
        self.objective = meta.objective
        scaler = meta.target_scaler or {"mean": 0.0, "scale": 1.0}
        self.register_buffer("y_mean", torch.tensor(float(scaler["mean"])))
        self.register_buffer("y_scale", torch.tensor(float(scaler["scale"])))

    def forward(self, x: Tensor) -> Tensor:
        z = self.model(x)
        if self.objective in SEQUENCE_OBJECTIVES:
            return z  # (B, T, V) logits: sampling needs them with a temperature, not softmaxed
        if self.objective == "binary":
            p = torch.sigmoid(z)  # (B, 1) probability of classes[1]
            return torch.cat([1 - p, p], dim=1)
        if self.objective == "multiclass":
            return torch.softmax(z, dim=1)
        return z * self.y_scale + self.y_mean
