"""Transfer learning on the digits CNN: from the registry, a checkpoint, or torchvision's local cache."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from components.config import ConfigError, TrainConfig, validate
from components.core.errors import TransferError
from components.train.checkpoint import load_trained
from components.train.step import train
from tests.conftest import PARAMS


def _cfg(**kw: object) -> TrainConfig:
    base = {"model": {"name": "cnn", "channels": [8, 16]}, "epochs": 2, "early_stopping": {"enabled": False}}
    return TrainConfig.model_validate({**base, **kw})


def test_transfer_from_registered_model_and_feature_extractor(
    digits_artifacts: Path, digits_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """models:/digits@champion -> the checkpoint.pt train logged in that run; the frozen backbone stays put. The
    downloaded checkpoint does not stay in the system's temp folder."""
    registered = PARAMS["train"]["digits"]["model"]
    cfg = _cfg(model=registered, init_from="models:/digits@champion", transfer="feature_extractor", epochs=2)
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    train(digits_data, tmp_path / "out", cfg, "digits", progress=False)
    assert list(system_tmp.iterdir()) == []
    source, _ = load_trained(digits_artifacts)
    tuned, _ = load_trained(tmp_path / "out")
    src, new = source.state_dict(), tuned.state_dict()
    backbone = [k for k in src if k.startswith("backbone.")]
    assert backbone and all(torch.equal(src[k], new[k]) for k in backbone)  # weights and BN statistics
    assert not torch.equal(src["head.0.weight"], new["head.0.weight"])


def test_finetune_from_checkpoint_path_with_lower_backbone_lr(digits_data: Path, tmp_path: Path) -> None:
    train(digits_data, tmp_path / "a", _cfg(), "digits", progress=False)
    cfg = _cfg(init_from=str(tmp_path / "a" / "checkpoint.pt"), backbone_lr_scale=0.1, scheduler={"name": "onecycle"})
    train(digits_data, tmp_path / "b", cfg, "digits", progress=False)
    with pytest.raises(TransferError, match="no backbone weights match"):
        train(
            digits_data,
            tmp_path / "c",
            _cfg(model={"name": "cnn", "channels": [4]}, init_from=cfg.init_from),
            "digits",
            progress=False,
        )


def test_torchvision_weights_from_the_local_cache_only(
    digits_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cfg = _cfg(model={"name": "torchvision", "arch": "resnet18"}, init_from="torchvision:resnet18", epochs=1)
    with pytest.raises(TransferError, match="not in the local torch cache.*weights='DEFAULT'"):
        train(digits_data, tmp_path / "a", cfg, "digits", progress=False)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), cached)  # stands in for the real download
    train(
        digits_data, tmp_path / "b", cfg.model_copy(update={"transfer": "feature_extractor"}), "digits", progress=False
    )
    model, _ = load_trained(tmp_path / "b")
    assert torch.equal(model.backbone.conv1.weight, reference.conv1.weight)
    with pytest.raises(ConfigError, match="needs model"):
        validate(TrainConfig, {"init_from": "torchvision:resnet18"}, "train.t")
