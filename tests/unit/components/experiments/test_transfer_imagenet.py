"""The ImageNet transfer study's budgets: exact, nested per-class slices, and clear errors for impossible ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from components.config import ConfigError, validate
from components.core.contract import load_meta
from components.core.errors import DataError
from components.experiments.transfer_imagenet import ImageNetTransferConfig, _budget_split


def _rows(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(data_dir / "train.npz") as split:
        return split["rows"], split["y"]


def test_budgets_keep_exactly_k_per_class_and_are_nested(digits_data: Path, tmp_path: Path) -> None:
    small = _budget_split(digits_data, tmp_path / "small", 3, seed=1)
    large = _budget_split(digits_data, tmp_path / "large", 7, seed=1)
    (rows_s, y_s), (rows_l, y_l) = _rows(small), _rows(large)
    assert (np.bincount(y_s) == 3).all() and (np.bincount(y_l) == 7).all()
    assert set(rows_s) < set(rows_l)  # the smaller budget is a subset of the larger
    assert load_meta(small).splits["train"] == 30
    with np.load(small / "test.npz") as a, np.load(digits_data / "test.npz") as b:
        assert (a["rows"] == b["rows"]).all()  # the same held-out test split at every budget


def test_budget_larger_than_the_data_names_the_class(digits_data: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"per_class: 5000 images per class asked, but class \d+ has only \d+"):
        _budget_split(digits_data, tmp_path / "too_many", 5000, seed=1)
    assert not (tmp_path / "too_many").exists()


@pytest.mark.parametrize("per_class", [[], [0, 10]])
def test_empty_or_zero_budget_is_refused(per_class: list[int]) -> None:
    with pytest.raises(ConfigError, match="experiments.transfer_imagenet.per_class"):
        validate(ImageNetTransferConfig, {"per_class": per_class}, "experiments.transfer_imagenet")
