"""Augmentation policies: the ops, the preview, what each task kind accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from components.config import AugmentConfig, ConfigError, PrepareConfig
from components.data.augment import augment, build_transform
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


def test_tabular_tasks_get_an_empty_policy(tmp_path: Path) -> None:
    ingest("wine", tmp_path / "raw")
    prepare(tmp_path / "raw", tmp_path / "data", PrepareConfig(dataset="wine", objective="multiclass"), "w")
    assert augment(tmp_path / "data", tmp_path / "aug", AugmentConfig(), "w")["ops"] == []
    assert not (tmp_path / "aug" / "preview.png").exists()
    with pytest.raises(ConfigError, match="needs an image task"):
        augment(tmp_path / "data", tmp_path / "aug", AugmentConfig(rotation=10), "w")
