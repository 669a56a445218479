"""The configurable CNN's shapes and summary."""

from __future__ import annotations

import pytest
import torch

from models import build_model, summarize


@pytest.mark.parametrize(
    "kwargs",
    [
        {"padding": "same", "stride": 1},
        {"padding": "valid", "pool": "avg", "convs_per_block": 1},
        {"padding": 1, "stride": 2, "pool": "none", "global_pool": "flatten", "head": [32]},
        {"residual": True, "global_pool": "max", "dropout": 0.2, "batch_norm": False},
    ],
)
def test_cnn_shapes_and_summary(kwargs: dict) -> None:
    net = build_model("cnn", in_channels=1, image_size=(28, 28), out_features=10, channels=[8, 16], **kwargs)
    assert net(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    summary = summarize(net, [None, 1, 28, 28])
    assert "Conv2d" in summary and f"total parameters {sum(p.numel() for p in net.parameters()):,d}" in summary
