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
        {"pool_early": True, "convs_per_block": 2, "padding": "valid", "global_pool": "flatten", "head": [16]},
    ],
)
def test_cnn_shapes_and_summary(kwargs: dict) -> None:
    net = build_model("cnn", in_channels=1, image_size=(28, 28), out_features=10, channels=[8, 16], **kwargs)
    assert net(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    summary = summarize(net, [None, 1, 28, 28])
    assert "Conv2d" in summary and f"total parameters {sum(p.numel() for p in net.parameters()):,d}" in summary


def test_pool_early_pools_before_the_norm_and_activation() -> None:
    """Max-pooling commutes with ReLU, so without batch norm the early-pooling net computes the same function with
    the same weights; its batch norm sees a quarter of the pixels; a residual block refuses it (the skip would skip
    the pooling)."""
    torch.manual_seed(0)
    kwargs = {"in_channels": 1, "image_size": (28, 28), "out_features": 10, "channels": [8, 16], "convs_per_block": 1}
    late = build_model("cnn", **kwargs, batch_norm=False, global_pool="flatten").eval()
    early = build_model("cnn", **kwargs, batch_norm=False, global_pool="flatten", pool_early=True).eval()
    early.load_state_dict(late.state_dict())
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(early(x), late(x), atol=1e-5)
    seen: list[torch.Size] = []
    net = build_model("cnn", **kwargs, pool_early=True)
    net.backbone[0].convs[2].register_forward_hook(lambda module, args, out: seen.append(args[0].shape))
    net(x)
    assert seen == [torch.Size([4, 8, 14, 14])]  # the first block's norm: 14 x 14, not the conv's 28 x 28
    with pytest.raises(ValueError, match="pool_early"):
        build_model("cnn", **kwargs, residual=True, pool_early=True)


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
