"""Series preparation: a chronological split scaled on the training span, and the seasonal-naive baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from components.config import PrepareConfig
from components.core.errors import DataError
from components.data.series import seasonal_naive


def _series_csv(folder: Path, values: np.ndarray, start: str = "2000-01-01", freq: str = "W-SAT") -> None:
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    dates = pd.date_range(start, periods=len(values), freq=freq)
    pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "value": values}).to_csv(folder / "data.csv", index=False)


def test_series_split_is_chronological_and_scaled_on_the_train_span(tmp_path: Path) -> None:
    from components.data.prepare import prepare
    from components.data.series import read_series, window_ends
    from components.data.splits import load_split

    values = np.arange(300, dtype=float)
    values[[10, 11, 200]] = np.nan  # gaps to fill
    _series_csv(tmp_path / "raw" / "s", values)
    cfg = PrepareConfig(dataset="s", objective="regression", series={"window": 10, "horizon": 3, "stride": 1})
    meta = prepare(tmp_path / "raw", tmp_path / "out", cfg, "s")
    series = read_series(tmp_path / "out")
    assert series["filled"].sum() == 3 and series["values"][10] == pytest.approx(10.0)  # interpolated
    assert meta.scaler["mean"] == [pytest.approx(np.arange(210).mean())]  # the first 70% only
    ends = {s: window_ends(tmp_path / "out", s) for s in ("train", "val", "test")}
    assert ends["train"].max() + 3 < 210 <= ends["val"].min() + 1  # train targets end before the val span
    assert ends["val"].max() + 3 < 255 <= ends["test"].min() + 1
    x, y = load_split(tmp_path / "out", "test")
    assert x.shape[1:] == (10, 1) and y.shape[1] == 3
    raw = x * meta.scaler["scale"][0] + meta.scaler["mean"][0]
    np.testing.assert_allclose(raw[0, -1, 0], ends["test"][0], atol=1e-3)  # the window ends at its t
    with pytest.raises(DataError, match="too few"):
        prepare(
            tmp_path / "raw", tmp_path / "out2", PrepareConfig(**{**cfg.model_dump(), "series": {"window": 250}}), "s"
        )


def test_seasonal_naive() -> None:
    values = np.arange(20, dtype=float)
    # period 4, from t=9: steps 10..13 copy 6..9, step 14 copies 10 - 4 = ... the last full season again
    assert seasonal_naive(values, np.array([9]), 6, 4).tolist() == [[6, 7, 8, 9, 6, 7]]
