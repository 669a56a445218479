"""Prepare: seeded (stratified) train/val/test split, scaling fitted on train only, and meta.json.

Texts (`prepare.<task>.text`) go to components/data/text/prepare.py, time series (`prepare.<task>.series`) to
components/data/series.py; tables and images are handled here.

Tables are standard-scaled; images (IDX files or class folders) are resized / converted as configured,
stored as uint8 [N, C, H, W], and normalised with per-channel mean/std measured on the train split.
meta.json is the contract every later step and the server read; nothing downstream re-derives
preprocessing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from components.config import PrepareConfig
from components.core.errors import DataError
from components.data.images import is_image_dataset, load_raw, normalise
from components.core.io import atomic_write, read_json, sha256_dir, sha256_file, write_json
from components.train.objectives import SEQUENCE_OBJECTIVES

SPLITS = ("train", "val", "test")


def prepare(raw_dir: Path, out_dir: Path, cfg: PrepareConfig, task: str) -> dict[str, Any]:
    """Split and scale `raw_dir/<dataset>/` (data.csv or images) into `out_dir`; return meta.json's content."""
    folder = Path(raw_dir) / cfg.dataset
    if cfg.objective in SEQUENCE_OBJECTIVES:  # token windows or source/target pairs (components/data/text/lm.py)
        from components.data.text.lm import prepare_lm

        return prepare_lm(folder, Path(out_dir), cfg, task)
    if cfg.text is not None:  # texts: tokenizer + padded ids (components/data/text/prepare.py)
        from components.data.text.prepare import prepare_text

        return prepare_text(folder, Path(out_dir), cfg, task)
    if cfg.series is not None:  # a time series: chronological windows (components/data/series.py)
        from components.data.series import prepare_series

        return prepare_series(folder, Path(out_dir), cfg, task)
    if folder.is_dir() and is_image_dataset(folder):
        return prepare_images(folder, Path(out_dir), cfg, task)
    csv = folder / "data.csv"
    if not csv.is_file():
        raise FileNotFoundError(f"{csv} not found: run `dlpipe data pull` (or `dlpipe data ingest`) first")
    frame = pd.read_csv(csv)
    features, target = _validate(frame, cfg, csv)

    x = frame[features].to_numpy(dtype=np.float64)
    classes: list[str] | None = None
    if cfg.objective == "regression":
        y = frame[cfg.target].to_numpy(dtype=np.float64)
    else:
        classes = sorted(frame[cfg.target].astype(str).unique().tolist())
        if cfg.objective == "binary" and len(classes) != 2:
            raise DataError(f"{csv}: objective 'binary' needs 2 classes in {cfg.target!r}, found {len(classes)}")
        y = frame[cfg.target].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)

    idx_train, idx_val, idx_test = split_indices(y, cfg, stratified=classes is not None)

    scaler = StandardScaler().fit(x[idx_train])
    target_scaler = None
    if classes is None:
        mean, std = float(y[idx_train].mean()), float(y[idx_train].std())
        target_scaler = {"mean": mean, "scale": std}

    out_dir = Path(out_dir)
    for name, rows in zip(SPLITS, (idx_train, idx_val, idx_test), strict=True):
        xs = scaler.transform(x[rows]).astype(np.float32)
        ys = y[rows] if classes else ((y[rows] - target_scaler["mean"]) / target_scaler["scale"])
        ys = ys.astype(np.int64 if classes else np.float32)
        atomic_write(out_dir / f"{name}.npz", lambda tmp, xs=xs, ys=ys, rows=rows: _save_npz(tmp, xs, ys, rows))

    meta = {
        "task": task,
        "dataset": cfg.dataset,
        "objective": cfg.objective,
        "target": target,
        "feature_names": features,
        "classes": classes,
        "scaler": {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist()},
        "target_scaler": target_scaler,
        "splits": {"train": len(idx_train), "val": len(idx_val), "test": len(idx_test)},
        "data_sha256": sha256_file(csv),
        "input": {"name": "features", "dtype": "float32", "shape": [None, len(features)]},
        "output": {
            "name": "prediction" if classes is None else "probabilities",
            "shape": [None, 1 if classes is None else len(classes)],
        },
    }
    write_json(out_dir / "meta.json", meta)
    return meta


def split_indices(y: np.ndarray, cfg: PrepareConfig, stratified: bool) -> tuple[np.ndarray, ...]:
    """Seeded train/val/test row indices (stratified by class for classifiers); `train_limit` keeps a
    stratified subset of the train rows only, so val and test stay the same as without it."""
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


def prepare_images(folder: Path, out_dir: Path, cfg: PrepareConfig, task: str) -> dict[str, Any]:
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
        atomic_write(out_dir / f"{name}.npz", lambda tmp, rows=rows: _save_npz(tmp, x[rows], y[rows], rows))
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
    write_json(out_dir / "meta.json", meta)
    return meta


def _validate(frame: pd.DataFrame, cfg: PrepareConfig, csv: Path) -> tuple[list[str], str]:
    if cfg.target not in frame.columns:
        raise DataError(f"{csv}: target column {cfg.target!r} is missing")
    if len(frame) < 20:
        raise DataError(f"{csv}: only {len(frame)} rows; at least 20 are needed to split")
    features = [c for c in frame.columns if c != cfg.target]
    non_numeric = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        raise DataError(f"{csv}: non-numeric feature columns: {', '.join(non_numeric)}")
    missing = frame.columns[frame.isna().any()].tolist()
    if missing:
        raise DataError(f"{csv}: missing values (NaN) in columns: {', '.join(missing)}")
    values = frame[features].to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise DataError(f"{csv}: infinite values in the feature columns")
    return features, cfg.target


def _save_npz(path: Path, x: np.ndarray, y: np.ndarray, rows: np.ndarray) -> None:
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
        x = normalise(x, load_meta(data_dir)["preprocessing"])
    return x, y


def load_meta(data_dir: Path) -> dict[str, Any]:
    return read_json(Path(data_dir) / "meta.json")
