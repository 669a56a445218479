"""Forecast evaluation: the model against the seasonal-naive baseline on the test span, and the forecast plot."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from components.core.contract import TaskMeta
from components.evaluate.plots import save_figure


def forecast_scores(data_dir: Path, meta: TaskMeta, out: np.ndarray, plots_dir: Path) -> dict[str, float]:
    """Test-span MAE / RMSE / MAPE (%) of the model and of the seasonal-naive forecast, their ratios, and the
    forecast plot (history, truth, the model's and the baseline's forecasts)."""
    from components.data.series import forecast_metrics, read_series, seasonal_naive, window_ends

    series, ends, h = read_series(data_dir), window_ends(data_dir, "test"), meta.horizon
    values = series["values"]
    truth = values[ends[:, None] + np.arange(1, h + 1)[None, :]]
    naive = seasonal_naive(values, ends, h, meta.series["seasonal_period"])
    model, base = forecast_metrics(truth, out), forecast_metrics(truth, naive)
    scores = {**model, **{f"naive_{k}": v for k, v in base.items()}}
    scores |= {f"{k}_ratio_to_naive": model[k] / base[k] for k in ("mae", "rmse", "mape") if base[k] > 0}
    for k in (1, h):  # error growth over the horizon
        scores[f"mae_step{k}"] = float(np.abs(out[:, k - 1] - truth[:, k - 1]).mean())
    plot_forecast(series, ends, out, naive, meta, plots_dir / "forecast.png")
    return scores


def plot_forecast(
    series: dict[str, np.ndarray],
    ends: np.ndarray,
    out: np.ndarray,
    naive: np.ndarray,
    meta: TaskMeta,
    path: Path,
) -> None:
    """The whole series, the test span's truth, and forecasts from non-overlapping test windows."""
    import pandas as pd

    dates, values, h = pd.to_datetime(series["dates"]), series["values"], meta.horizon
    test_from = pd.Timestamp(meta.series["spans"]["test"]["from"])
    fig, (ax, zoom) = plt.subplots(2, 1, figsize=(10, 7))
    for a in (ax, zoom):
        a.plot(dates, values, color="0.6", lw=0.8, label="history / truth")
        a.axvline(test_from, color="k", ls=":", lw=0.8)
    for j, i in enumerate(range(0, len(ends), h)):  # consecutive forecasts that do not overlap
        steps = dates[ends[i] + 1 : ends[i] + 1 + h]
        zoom.plot(steps, out[i], color="C0", lw=1.4, label="model" if j == 0 else None)
        zoom.plot(steps, naive[i], color="C3", lw=1, ls="--", label="seasonal naive" if j == 0 else None)
    ax.set(title=f"{meta.dataset}: train / validation / test spans (test from {test_from.date()})", ylabel="value")
    zoom.set(title=f"Test span: {h}-step forecasts from consecutive windows", ylabel="value")
    first = max(0, ends[0] - 10)
    shown = np.concatenate([values[first:], out.ravel(), naive.ravel()])
    pad = 0.05 * float(np.ptp(shown) or 1.0)
    zoom.set_xlim(dates[first], dates[-1])
    zoom.set_ylim(float(shown.min()) - pad, float(shown.max()) + pad)
    zoom.legend(loc="upper left")
    save_figure(fig, path)
