"""Split surgery the experiments share: a smaller validation split where it only draws the learning curves.

The experiments train a fixed number of epochs and keep the last epoch's weights, so the validation split
selects nothing; scoring all of it after every epoch cost more than the training itself (Fashion-MNIST's
5,000 validation images against 300 training images). The first `keep` rows of prepare's seeded split are a
random sample of it; train and test stay exactly as prepared, so the test scores do not move.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from components.core.contract import load_meta
from components.core.io import atomic_write


def keep_val(data_dir: Path, keep: int | None) -> int:
    """Cut `data_dir`'s val split (every array in val.npz) to its first `keep` rows and record the new size in
    meta.json; `None`, or a split already that small, leaves it as it is. Returns the rows the split has."""
    data_dir = Path(data_dir)
    path = data_dir / "val.npz"
    with np.load(path) as split:
        arrays = {name: split[name] for name in split.files}
    rows = len(next(iter(arrays.values())))
    if keep is None or keep >= rows:
        return rows

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{name: a[:keep] for name, a in arrays.items()})

    atomic_write(path, write)
    meta = load_meta(data_dir)
    meta.model_copy(update={"splits": {**meta.splits, "val": keep}}).write(data_dir)
    return keep
