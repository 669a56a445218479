"""keep_val: the experiments' validation split cut to its first rows, train and test untouched."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from components.core.contract import load_meta


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as split:
        return {name: split[name] for name in split.files}


def test_keep_val_cuts_only_the_validation_split(digits_data: Path, tmp_path: Path) -> None:
    from components.experiments.splits import keep_val

    data = Path(shutil.copytree(digits_data, tmp_path / "data"))
    before = {s: _arrays(data / f"{s}.npz") for s in ("train", "val", "test")}
    assert len(before["val"]["y"]) > 40

    assert keep_val(data, 40) == 40
    after = {s: _arrays(data / f"{s}.npz") for s in ("train", "val", "test")}
    for name, array in before["val"].items():  # every array of the split, the same first rows
        np.testing.assert_array_equal(after["val"][name], array[:40])
    for split in ("train", "test"):
        assert all(np.array_equal(after[split][k], v) for k, v in before[split].items())
    assert load_meta(data).splits == {**load_meta(digits_data).splits, "val": 40}

    # None, or a split already that small, leaves it as it is
    assert keep_val(data, None) == 40 and keep_val(data, 1000) == 40
    np.testing.assert_array_equal(_arrays(data / "val.npz")["y"], before["val"]["y"][:40])
