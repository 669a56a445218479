"""The feed-forward network's shapes for each activation and norm."""

from __future__ import annotations

import pytest
import torch

from models import build_model


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("norm", ["none", "batch", "layer"])
def test_ffn_shapes(activation: str, norm: str) -> None:
    net = build_model("ffn", in_features=4, out_features=3, hidden=[16, 8], activation=activation, norm=norm)
    assert net(torch.randn(5, 4)).shape == (5, 3)
