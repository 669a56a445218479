"""Prepare (images): the meta, train-only statistics, stratified splits and train_limit on the 8x8 digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from components.config import PrepareConfig
from components.core.contract import load_meta
from components.data.prepare import prepare
from components.data.splits import load_split


def test_image_prepare_meta_and_train_only_statistics(digits_data: Path) -> None:
    meta = load_meta(digits_data)
    assert meta.input.shape == [None, 1, 8, 8] and meta.classes == [str(k) for k in range(10)]
    pre = meta.preprocessing
    assert pre["resize"] == [8, 8] and pre["grayscale"] and pre["channels"] == 1
    x_train, y_train = load_split(digits_data, "train")
    x_test, y_test = load_split(digits_data, "test")
    assert x_train.dtype == np.float32 and x_train.shape[1:] == (1, 8, 8)
    assert abs(float(x_train.mean())) < 1e-3 and abs(float(x_train.std()) - 1) < 1e-3  # train statistics
    assert abs(float(x_test.mean())) > 1e-4
    shares = [np.bincount(y, minlength=10) / len(y) for y in (y_train, y_test)]
    assert np.abs(shares[0] - shares[1]).max() < 0.02  # stratified


def test_train_limit_keeps_val_and_test(tmp_path: Path, digits_data: Path) -> None:
    raw = digits_data.parent / "raw"
    cfg = PrepareConfig(dataset="digits", objective="multiclass", train_limit=100)
    meta = prepare(raw, tmp_path / "small", cfg, "small")
    assert meta.splits["train"] == 100 and meta.splits["test"] == load_meta(digits_data).splits["test"]
    np.testing.assert_array_equal(load_split(tmp_path / "small", "test")[1], load_split(digits_data, "test")[1])
