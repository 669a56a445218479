"""Prepare an image dataset (IDX files or class folders): resize / convert as configured, uint8 [N, C, H, W]
splits, and per-channel mean/std measured on the train split, recorded as meta.json's preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from components.config import PrepareConfig
from components.core.contract import TaskMeta
from components.core.errors import DataError
from components.core.io import atomic_write, sha256_dir
from components.data.images import load_raw
from components.data.splits import SPLITS, save_npz, split_indices


def prepare_images(folder: Path, out_dir: Path, cfg: PrepareConfig, task: str) -> TaskMeta:
    """Images -> uint8 splits [N, C, H, W] + meta.json whose `preprocessing` says how to get model input."""
    if cfg.objective != "multiclass":
        raise DataError(f"prepare.{task}.objective: image datasets are classified, use 'multiclass'")
    x, y, classes = load_raw(folder, cfg.image_size, cfg.grayscale)
    if len(x) < 20:
        raise DataError(f"{folder}: only {len(x)} images; at least 20 are needed to split")
    idx_train, idx_val, idx_test = split_indices(y, cfg, stratified=True)
    train = x[idx_train].astype(np.float64) / 255.0  # statistics of the train split only
    mean = train.mean(axis=(0, 2, 3)).round(6).tolist()
    std = np.maximum(train.std(axis=(0, 2, 3)), 1e-3).round(6).tolist()
    channels, height, width = x.shape[1:]
    for name, rows in zip(SPLITS, (idx_train, idx_val, idx_test), strict=True):
        atomic_write(out_dir / f"{name}.npz", lambda tmp, rows=rows: save_npz(tmp, x[rows], y[rows], rows))
    meta = {
        "task": task,
        "dataset": cfg.dataset,
        "objective": "multiclass",
        "classes": classes,
        "splits": {"train": len(idx_train), "val": len(idx_val), "test": len(idx_test)},
        "data_sha256": sha256_dir(folder),
        "preprocessing": {
            "resize": [height, width],
            "resize_rule": "any other size is resized to resize (bilinear, aspect ratio not kept)",
            "grayscale": channels == 1,
            "channels": int(channels),
            "scale": 255.0,
            "mean": mean,
            "std": std,
        },
        "input": {"name": "image", "dtype": "float32", "shape": [None, int(channels), int(height), int(width)]},
        "output": {"name": "probabilities", "shape": [None, len(classes)]},
    }
    meta = TaskMeta(kind="image", **meta)
    meta.write(out_dir)
    return meta
