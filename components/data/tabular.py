"""Prepare a table (data.csv with numeric features and a `target` column): seeded (stratified) split, standard
scaling fitted on the train split only, and the tabular task contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler

from components.config import PrepareConfig
from components.core.contract import TaskMeta
from components.core.errors import DataError
from components.core.io import atomic_write, sha256_file
from components.data.splits import SPLITS, save_npz, split_indices


def prepare_tabular(folder: Path, out_dir: Path, cfg: PrepareConfig, task: str) -> TaskMeta:
    """Split and scale `folder/data.csv` into `out_dir`; return the contract written to meta.json."""
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
        atomic_write(out_dir / f"{name}.npz", lambda tmp, xs=xs, ys=ys, rows=rows: save_npz(tmp, xs, ys, rows))

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
    meta = TaskMeta(kind="tabular", **meta)
    meta.write(out_dir)
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
