"""Prepare for forecasting: a regular, gap-filled series cut into (window -> next H values) examples.

Reads `data.csv` (columns `date`, `value`; see components/data/ingest.py). Steps, in order:
1. put the series on its frequency (missing steps appear as NaN), fill them (`series.fill`);
2. split the time axis chronologically: the first part is the training span, then validation, then test
   (no shuffling across the split);
3. fit the scaler (mean, std) on the training span only and scale the whole series with it;
4. cut windows: inputs are `window` consecutive values, targets the next `horizon` values. A window belongs
   to the span that holds all of its targets; windows whose targets straddle two spans are dropped. Inputs
   may reach back into an earlier span: that is history a forecaster would have.

Writes `train/val/test.npz` (`x` float32 [N, window, 1], `y` float32 [N, horizon], both scaled; `t` the
index of each window's last input step) and `series.npz` (dates, filled raw values, which were filled), so
evaluate can draw the forecast and compute the seasonal-naive baseline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from components.config import PrepareConfig, SeriesConfig
from components.core.contract import TaskMeta
from components.core.errors import DataError
from components.core.io import atomic_write, sha256_file

SPLITS = ("train", "val", "test")
SERIES_FILE = "series.npz"


def load_series(csv: Path, cfg: SeriesConfig) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray, str]:
    """(dates, filled values, was-filled mask, frequency) of a series data.csv."""
    frame = pd.read_csv(csv)
    for column in ("date", "value"):
        if column not in frame.columns:
            raise DataError(f"{csv}: column {column!r} is missing (columns: {', '.join(frame.columns)})")
    series = pd.Series(frame["value"].to_numpy(dtype=np.float64), index=pd.to_datetime(frame["date"]))
    if series.index.has_duplicates:
        raise DataError(f"{csv}: repeated dates")
    series = series.sort_index()
    freq = cfg.freq or pd.infer_freq(series.index[: min(len(series), 200)])
    if freq is None:
        raise DataError(f"{csv}: cannot infer the frequency of the dates; set prepare.<task>.series.freq")
    series = series.asfreq(freq)  # missing steps become NaN
    missing = series.isna().to_numpy()
    if cfg.fill == "interpolate":
        series = series.interpolate(method="time").ffill().bfill()
    elif cfg.fill == "ffill":
        series = series.ffill().bfill()
    elif missing.any():
        raise DataError(f"{csv}: {int(missing.sum())} missing value(s) and series.fill is 'none'")
    values = series.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise DataError(f"{csv}: no values to fill the gaps from")
    return series.index, values, missing, freq


def windows(values: np.ndarray, window: int, horizon: int, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inputs [N, window, 1] and targets [N, horizon] for windows whose last input step is each of `ends`."""
    x = np.stack([values[t - window + 1 : t + 1] for t in ends])[..., None]
    y = np.stack([values[t + 1 : t + 1 + horizon] for t in ends])
    return x.astype(np.float32), y.astype(np.float32)


def prepare_series(folder: Path, out_dir: Path, cfg: PrepareConfig, task: str) -> TaskMeta:
    scfg = cfg.series or SeriesConfig()
    csv = Path(folder) / "data.csv"
    if not csv.is_file():
        raise FileNotFoundError(f"{csv} not found: run `dlpipe data pull` (or `dlpipe data ingest`) first")
    dates, values, missing, freq = load_series(csv, scfg)
    n, w, h = len(values), scfg.window, scfg.horizon
    n_test, n_val = round(n * cfg.test_size), round(n * cfg.val_size)
    train_end, val_end = n - n_test - n_val, n - n_test  # spans [0, train_end), [train_end, val_end), [val_end, n)
    if train_end < w + h + 10 or min(n_val, n_test) < h:
        raise DataError(f"{csv}: {n} steps are too few for window {w}, horizon {h} and the split sizes")
    mean, scale = float(values[:train_end].mean()), float(values[:train_end].std())
    scale = scale if scale > 0 else 1.0
    scaled = (values - mean) / scale
    # last input step t of each window; targets t+1 .. t+h must lie inside one span
    spans = {"train": (0, train_end), "val": (train_end, val_end), "test": (val_end, n)}
    out_dir = Path(out_dir)
    counts = {}
    for name, (lo, hi) in spans.items():
        ends = np.arange(max(w - 1, lo - 1), hi - h)
        if name == "train":
            ends = ends[:: scfg.stride]
        if not len(ends):
            raise DataError(f"{csv}: the {name} span holds no complete window")
        x, y = windows(scaled, w, h, ends)
        atomic_write(out_dir / f"{name}.npz", lambda tmp, x=x, y=y, t=ends: _save(tmp, x=x, y=y, t=t))
        counts[name] = len(ends)
    iso = np.array(dates.strftime("%Y-%m-%dT%H:%M:%S"), dtype=str)
    atomic_write(out_dir / SERIES_FILE, lambda tmp: _save(tmp, dates=iso, values=values, filled=missing))
    meta = {
        "task": task,
        "dataset": cfg.dataset,
        "objective": "regression",
        "target": "value",
        "classes": None,
        "splits": counts,
        "data_sha256": sha256_file(csv),
        "scaler": {"mean": [mean], "scale": [scale]},
        "target_scaler": {"mean": mean, "scale": scale},
        "horizon": h,
        "series": {
            "file": SERIES_FILE,
            "freq": freq,
            "fill": scfg.fill,
            "filled_steps": int(missing.sum()),
            "window": w,
            "min_history": w,
            "history_rule": f"the model reads the last {w} values; a longer history is accepted, its start unused",
            "horizon": h,
            "seasonal_period": scfg.seasonal_period,
            "spans": {
                name: {"from": str(iso[lo]), "to": str(iso[hi - 1]), "steps": int(hi - lo)}
                for name, (lo, hi) in spans.items()
            },
            "scaling": "(value - mean) / scale with the training span's mean and std",
        },
        "input": {"name": "history", "dtype": "float32", "shape": [None, None, 1]},
        "output": {"name": "forecast", "shape": [None, h]},
    }
    meta = TaskMeta(kind="series", **meta)
    meta.write(out_dir)
    return meta


def _save(path: Path, **arrays: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def read_series(data_dir: Path) -> dict[str, np.ndarray]:
    with np.load(Path(data_dir) / SERIES_FILE) as z:
        return {k: z[k] for k in z.files}


def window_ends(data_dir: Path, split: str) -> np.ndarray:
    with np.load(Path(data_dir) / f"{split}.npz") as z:
        return z["t"]


def seasonal_naive(values: np.ndarray, ends: np.ndarray, horizon: int, period: int) -> np.ndarray:
    """The seasonal-naive forecast [N, horizon] from each window end t: y(t+k) = y(t+k-m*ceil(k/m))."""
    k = np.arange(1, horizon + 1)
    back = period * np.ceil(k / period).astype(int)
    return values[ends[:, None] + k[None, :] - back[None, :]]


def forecast_metrics(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    err = pred - truth
    return {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "mape": float(np.mean(np.abs(err) / np.maximum(np.abs(truth), 1e-12)) * 100),
    }
