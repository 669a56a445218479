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


def test_test_time_flip_averages_an_image_and_its_mirror() -> None:
    torch.manual_seed(0)
    net = build_model("cnn", in_channels=1, image_size=(28, 28), out_features=10, channels=[8, 16], tta_hflip=True)
    x = torch.randn(4, 1, 28, 28)
    net.train()
    assert not torch.allclose(net.logits(x), net.logits(x.flip(-1)))  # the network itself is not mirror-symmetric
    net.eval()
    with torch.no_grad():
        assert torch.allclose(net(x), (net.logits(x) + net.logits(x.flip(-1))) / 2, atol=1e-6)
        assert torch.allclose(net(x), net(x.flip(-1)), atol=1e-6)  # so a mirrored garment gets the same answer


def test_test_time_flip_is_in_the_exported_onnx_graph(digits_data, tmp_path) -> None:
    from components.config import ExportConfig, TrainConfig
    from components.data.splits import load_split
    from components.release.export import export, run_onnx
    from components.train.step import train

    model = {"name": "cnn", "channels": [4, 8], "convs_per_block": 1, "tta_hflip": True}
    train(digits_data, tmp_path, TrainConfig.model_validate({"epochs": 1, "model": model}), "digits", progress=False)
    info = export(digits_data, tmp_path, tmp_path, ExportConfig())
    assert info["parity_max_abs_diff"] < 1e-4
    x, _ = load_split(digits_data, "test")
    (mirrored,) = run_onnx(tmp_path / "model.onnx", {"image": x[:8, :, :, ::-1].copy()})
    (plain,) = run_onnx(tmp_path / "model.onnx", {"image": x[:8]})
    assert abs(mirrored - plain).max() < 1e-5  # the served graph averages each image with its mirror, as eval did
    assert len(plain) == 8  # and the batch axis stayed free (the example batch was another size)
