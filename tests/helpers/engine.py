"""Toy data and the runner the training-loop tests share."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from components.config import TrainConfig
from components.train.loop import fit, seed_everything
from models import build_model


def toy(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Linearly separable binary data: label = x0 + x1 > 0."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, :1] + x[:, 1:2] > 0).float()


BCE = F.binary_cross_entropy_with_logits


def cfg(**kw) -> TrainConfig:
    base = {"epochs": 4, "batch_size": 16, "early_stopping": {"enabled": False}, "model": {"hidden": [8]}}
    return TrainConfig.model_validate({**base, **kw})


def run(c: TrainConfig, **kw):
    seed_everything(c.seed)
    net = build_model("ffn", in_features=4, out_features=1, **c.model.kwargs())
    return net, fit(net, BCE, toy(), toy(32, 1), c, progress=False, **kw)
