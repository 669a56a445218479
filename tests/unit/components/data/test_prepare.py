"""Prepare (tables): splits are disjoint and stratified, scaling is fitted on train only, bad data is named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.config import PrepareConfig
from components.core.contract import load_meta
from components.core.errors import DataError
from components.data.ingest import ingest
from components.data.prepare import prepare
from components.data.splits import SPLITS, load_split


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prep")
    ingest("breast_cancer", root / "raw")
    cfg = PrepareConfig(dataset="breast_cancer", objective="binary", val_size=0.15, test_size=0.15, seed=7)
    prepare(root / "raw", root / "out", cfg, "t")
    return root / "out"


def test_meta_schema(prepared: Path) -> None:
    meta = load_meta(prepared)
    assert meta.objective == "binary" and meta.classes == ["benign", "malignant"]
    assert len(meta.feature_names) == 30 == len(meta.scaler["mean"]) == len(meta.scaler["scale"])
    assert sum(meta.splits.values()) == 569
    assert meta.input.shape == [None, 30] and meta.output.shape == [None, 2]


def test_splits_disjoint_cover_and_stratified(prepared: Path) -> None:
    rows = {}
    for split in SPLITS:
        with np.load(prepared / f"{split}.npz") as d:
            rows[split] = set(d["rows"].tolist())
    assert not rows["train"] & rows["val"] and not rows["train"] & rows["test"] and not rows["val"] & rows["test"]
    assert len(rows["train"] | rows["val"] | rows["test"]) == 569
    ratios = [load_split(prepared, s)[1].mean() for s in SPLITS]
    assert max(ratios) - min(ratios) < 0.03  # stratified: same malignant share in every split


def test_scaling_fitted_on_train_only(prepared: Path) -> None:
    x_train, _ = load_split(prepared, "train")
    x_test, _ = load_split(prepared, "test")
    assert np.allclose(x_train.mean(0), 0, atol=1e-5) and np.allclose(x_train.std(0), 1, atol=1e-3)
    assert not np.allclose(x_test.mean(0), 0, atol=1e-3)


def _bad_csv(tmp_path: Path, mutate) -> Path:
    frame = pd.DataFrame({"a": np.arange(30.0), "b": np.arange(30.0) * 2, "target": ["x", "y"] * 15})
    mutate(frame)
    (tmp_path / "raw" / "bad").mkdir(parents=True)
    frame.to_csv(tmp_path / "raw" / "bad" / "data.csv", index=False)
    return tmp_path


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.drop(columns="target", inplace=True), "target column 'target' is missing"),
        (lambda f: f.loc.__setitem__((3, "a"), np.nan), "missing values .* a"),
        (lambda f: f.__setitem__("b", ["z"] * 30), "non-numeric feature columns: b"),
        (lambda f: f.loc.__setitem__((5, "b"), np.inf), "infinite"),
    ],
)
def test_bad_data_names_the_problem(tmp_path: Path, mutate, message: str) -> None:
    root = _bad_csv(tmp_path, mutate)
    cfg = PrepareConfig(dataset="bad", objective="binary")
    with pytest.raises(DataError, match=message):
        prepare(root / "raw", root / "out", cfg, "t")
    assert not (root / "out" / "meta.json").exists()  # nothing half-written
