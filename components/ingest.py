"""Ingest: materialise a raw dataset under data/raw/<name>/ with the same bytes on every machine.

Built-in datasets come from data that ships inside installed packages, so no network is needed;
a user's own CSV goes through the same door (`ingest_csv`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from components.errors import DataError
from components.io import atomic_write

RAW_DIR = Path("data/raw")


def _sklearn(loader_name: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, loader_name)(as_frame=True)
        frame = bunch.frame.copy()
        if hasattr(bunch, "target_names") and len(getattr(bunch, "target_names", [])):
            # Store class names, not codes, so the raw file reads on its own.
            frame["target"] = [str(bunch.target_names[i]) for i in bunch.target]
        return frame

    return load


DATASETS: dict[str, Callable[[], pd.DataFrame]] = {
    "breast_cancer": _sklearn("load_breast_cancer"),  # 569 x 30, binary
    "wine": _sklearn("load_wine"),  # 178 x 13, 3 classes
    "diabetes": _sklearn("load_diabetes"),  # 442 x 10, regression
}


def ingest(dataset: str, raw_dir: Path = RAW_DIR) -> Path:
    """Write `raw_dir/<dataset>/data.csv` from a built-in source and return its folder."""
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; built-in datasets: {', '.join(sorted(DATASETS))}")
    frame = DATASETS[dataset]()
    return _write_frame(frame, Path(raw_dir) / dataset)


def ingest_csv(source: Path, name: str, raw_dir: Path = RAW_DIR, target: str = "target") -> Path:
    """Bring a user's CSV in as dataset `name`; it must parse and hold a `target` column."""
    source = Path(source)
    try:
        frame = pd.read_csv(source)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(f"{source}: cannot read as CSV: {err}") from err
    if target not in frame.columns:
        raise DataError(f"{source}: no {target!r} column (columns: {', '.join(map(str, frame.columns))})")
    out = Path(raw_dir) / name
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "data.csv", lambda tmp: shutil.copyfile(source, tmp))
    return out


def _write_frame(frame: pd.DataFrame, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    # repr-exact floats and "\n" line endings make the bytes identical on every platform.
    atomic_write(out / "data.csv", lambda tmp: frame.to_csv(tmp, index=False, lineterminator="\n"))
    return out
