"""Augmentation's point, measured: a CNN trained with rotations keeps its accuracy on rotated digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from components.config import AugmentConfig, TrainConfig
from components.core.contract import load_meta
from components.data.augment import augment
from components.data.splits import load_split
from components.train.checkpoint import load_trained
from components.train.step import train


def _rotated(x: np.ndarray, degrees: float, fill: float, seed: int = 0) -> torch.Tensor:
    """Each test image turned by +-degrees (the sign drawn per image)."""
    from torchvision.transforms.v2 import functional as F

    signs = np.random.default_rng(seed).choice([-1, 1], len(x))
    turned = [F.rotate(torch.as_tensor(img), float(s * degrees), fill=[fill]) for img, s in zip(x, signs, strict=True)]
    return torch.stack(turned)


def test_rotation_augmentation_keeps_accuracy_on_rotated_digits(digits_data: Path, tmp_path: Path) -> None:
    """The course's point: a CNN is not rotation invariant by itself; augmentation teaches it."""
    meta = load_meta(digits_data)
    fill = -meta.preprocessing["mean"][0] / meta.preprocessing["std"][0]
    x_test, y_test = load_split(digits_data, "test")
    rotated = _rotated(x_test, 35, fill)
    base = {"model": {"name": "cnn", "channels": [32, 64]}, "epochs": 8, "batch_size": 64, "lr": 0.003}
    base |= {"early_stopping": {"enabled": False}, "gradients": {"track": False}, "optimizer": "adamw"}
    accuracy = {}
    for name, policy in (("plain", AugmentConfig()), ("rotation", AugmentConfig(rotation=40, preview=0))):
        augment(digits_data, tmp_path / name / "augment", policy, "digits")
        train(
            digits_data,
            tmp_path / name,
            TrainConfig.model_validate(base),
            "digits",
            progress=False,
            augment_dir=tmp_path / name / "augment",
        )
        model, _ = load_trained(tmp_path / name)
        with torch.no_grad():
            accuracy[name] = float((model(rotated).argmax(1).numpy() == y_test).mean())
    print(f"accuracy on test digits rotated by +-35 degrees: {accuracy}")
    assert accuracy["rotation"] >= accuracy["plain"] + 0.15, accuracy
