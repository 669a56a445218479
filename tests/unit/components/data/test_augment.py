"""Augmentation policies: the ops, the preview, what each task kind accepts."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from components.config import AugmentConfig, ConfigError, PrepareConfig
from components.core.contract import TaskMeta, load_meta
from components.data.augment import augment, build_transform, ops_for
from components.data.ingest import ingest
from components.data.prepare import prepare
from components.data.splits import load_split


def test_policy_and_preview(digits_data: Path, tmp_path: Path) -> None:
    cfg = AugmentConfig(rotation=15, translate=0.1, noise_std=0.1, erasing=0.2, preview=16)
    policy = augment(digits_data, tmp_path, cfg, "digits")
    assert [op["op"] for op in policy["ops"]] == ["RandomAffine", "GaussianNoise", "RandomErasing"]
    assert json.loads((tmp_path / "augment.json").read_text()) == policy
    assert Image.open(tmp_path / "preview.png").size[0] > 8 * 8
    x = torch.as_tensor(load_split(digits_data, "train")[0][:64])
    out = build_transform(policy)(x)
    assert out.shape == x.shape and not torch.equal(out, x)
    with pytest.raises(ConfigError, match="colour_jitter: needs RGB"):
        augment(digits_data, tmp_path, AugmentConfig(colour_jitter=0.2), "digits")


def test_tabular_tasks_get_an_empty_policy_without_loading_torch(tmp_path: Path, monkeypatch) -> None:
    """A table's augment step, and its train step's transform, import neither torch nor torchvision: seconds of
    start-up in every `dlpipe augment` process of a tabular task."""
    ingest("wine", tmp_path / "raw")
    prepare(tmp_path / "raw", tmp_path / "data", PrepareConfig(dataset="wine", objective="multiclass"), "w")
    for name in ("torch", "torchvision"):
        monkeypatch.setitem(sys.modules, name, None)  # `import torch` now fails, as if it were not installed
    monkeypatch.setattr(sys.modules["components.data"], "augment", sys.modules["components.data.augment"])
    monkeypatch.delitem(sys.modules, "components.data.augment")  # both restored after the test
    fresh = importlib.import_module("components.data.augment")  # its module level runs again, torch blocked
    assert fresh.augment(tmp_path / "data", tmp_path / "aug", AugmentConfig(), "w")["ops"] == []
    assert not (tmp_path / "aug" / "preview.png").exists()
    assert fresh.load_transform(tmp_path / "aug", load_meta(tmp_path / "data")) is None
    with pytest.raises(ConfigError, match="needs an image task"):
        fresh.augment(tmp_path / "data", tmp_path / "aug", AugmentConfig(rotation=10), "w")


def test_colour_jitter_runs_on_pixels_and_returns_normalised_values() -> None:
    """Train rebuilds the policy with the task's meta.json: colour jitter un-normalises with its mean and std."""
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    meta = TaskMeta.model_construct(preprocessing={"mean": mean, "std": std, "channels": 3, "resize": [8, 8]})
    cfg = AugmentConfig(colour_jitter=0.5)
    policy = {"group_size": 4, "ops": ops_for(cfg, meta, "rgb")}
    torch.manual_seed(0)
    x = torch.randn(8, 3, 8, 8)
    out = build_transform(policy, meta)(x)
    low = (0 - torch.tensor(mean)) / torch.tensor(std)
    high = (1 - torch.tensor(mean)) / torch.tensor(std)
    assert out.shape == x.shape and not torch.allclose(out, x)
    assert (out >= low.view(1, 3, 1, 1) - 1e-5).all() and (out <= high.view(1, 3, 1, 1) + 1e-5).all()
