"""The three splits every task has: seeded (stratified) train/val/test indices, and how a split is saved and
loaded (images come back normalised as meta.json's preprocessing says)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from components.config import PrepareConfig
from components.core.contract import load_meta
from components.data.images import normalise

SPLITS = ("train", "val", "test")


def split_indices(y: np.ndarray, cfg: PrepareConfig, stratified: bool) -> tuple[np.ndarray, ...]:
    """Seeded train/val/test row indices (stratified by class for classifiers); `train_limit` keeps a
    stratified subset of the train rows only, so val and test stay the same as without it."""
    from sklearn.model_selection import train_test_split  # 1 s of import that only the prepare step needs

    idx = np.arange(len(y))
    idx_train, idx_hold = train_test_split(
        idx, test_size=cfg.val_size + cfg.test_size, random_state=cfg.seed, stratify=y if stratified else None
    )
    idx_val, idx_test = train_test_split(
        idx_hold,
        test_size=cfg.test_size / (cfg.val_size + cfg.test_size),
        random_state=cfg.seed,
        stratify=y[idx_hold] if stratified else None,
    )
    if cfg.train_limit is not None and cfg.train_limit < len(idx_train):
        strat = y[idx_train] if stratified else None
        idx_train, _ = train_test_split(idx_train, train_size=cfg.train_limit, random_state=cfg.seed, stratify=strat)
    return idx_train, idx_val, idx_test


def save_npz(path: Path, x: np.ndarray, y: np.ndarray, rows: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, x=x, y=y, rows=rows)


def load_split(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load one split's (model input, targets) written by `prepare`; images come back normalised as
    meta.json's preprocessing says (float32 [N, C, H, W])."""
    path = Path(data_dir) / f"{split}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the prepare step first")
    with np.load(path) as data:
        x, y = data["x"], data["y"]
    if x.dtype == np.uint8:
        x = normalise(x, load_meta(data_dir).preprocessing)
    return x, y
