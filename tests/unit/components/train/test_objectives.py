"""Output heads and losses match their definitions."""

from __future__ import annotations

import pytest
import torch

from components.config import ConfigError
from components.core.contract import TaskMeta
from components.train import objectives

META_BINARY = TaskMeta.model_construct(
    kind="tabular", objective="binary", classes=["a", "b"], feature_names=list("abcd")
)


def test_heads_losses_match_definitions() -> None:
    z, y = torch.randn(6, 1), torch.randint(0, 2, (6, 1)).float()
    expected = -(y * torch.log(torch.sigmoid(z)) + (1 - y) * torch.log(1 - torch.sigmoid(z))).mean()
    assert torch.allclose(objectives.loss_fn("binary")(z, y), expected, atol=1e-6)
    zc, yc = torch.randn(6, 3), torch.randint(0, 3, (6,))
    expected_ce = -torch.log_softmax(zc, 1)[torch.arange(6), yc].mean()
    assert torch.allclose(objectives.loss_fn("multiclass")(zc, yc), expected_ce, atol=1e-6)
    zr, yr = torch.randn(6, 1), torch.randn(6, 1)
    assert torch.allclose(objectives.loss_fn("regression")(zr, yr), ((zr - yr) ** 2).mean())
    assert torch.allclose(objectives.loss_fn("binary", "mse")(z, y), ((torch.sigmoid(z) - y) ** 2).mean())
    with pytest.raises(ConfigError, match="cross_entropy"):
        objectives.loss_fn("regression", "cross_entropy")


def test_output_head_probabilities_and_units() -> None:
    net = torch.nn.Linear(4, 1)
    probs = objectives.OutputHead(net, META_BINARY)(torch.randn(3, 4))
    assert probs.shape == (3, 2) and torch.allclose(probs.sum(1), torch.ones(3))
    meta = TaskMeta.model_construct(
        kind="tabular", objective="regression", target_scaler={"mean": 100.0, "scale": 10.0}
    )
    x = torch.randn(3, 4)
    assert torch.allclose(objectives.OutputHead(net, meta)(x), net(x) * 10 + 100)


def test_label_smoothing_and_regression_losses() -> None:
    z, y = torch.tensor([[20.0], [-20.0]]), torch.tensor([[1.0], [0.0]])
    assert objectives.loss_fn("binary")(z, y) < 1e-6 < objectives.loss_fn("binary", "bce", 0.2)(z, y)
    zc, yc = torch.tensor([[20.0, -20.0]]), torch.tensor([0])
    assert objectives.loss_fn("multiclass", "auto", 0.2)(zc, yc) > objectives.loss_fn("multiclass")(zc, yc)
    p, t = torch.tensor([[0.0], [3.0]]), torch.tensor([[1.0], [0.0]])
    assert objectives.loss_fn("regression", "mae")(p, t) == pytest.approx(2.0)
    assert objectives.loss_fn("regression", "huber")(p, t) == pytest.approx((0.5 + 2.5) / 2)
