"""Forecast evaluation: the model against the seasonal-naive and Holt-Winters baselines on the test span, and
the forecast plot of the three."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from components.core.contract import TaskMeta
from components.evaluate.plots import save_figure

STYLES = ({"color": "C0", "lw": 1.4}, {"color": "C2", "lw": 1, "ls": "-."}, {"color": "C3", "lw": 1, "ls": "--"})


def forecast_scores(data_dir: Path, meta: TaskMeta, out: np.ndarray, plots_dir: Path) -> dict[str, float]:
    """Test-span MAE / RMSE / MAPE (%) of the model, of the seasonal-naive forecast and of Holt-Winters
    (components/evaluate/holt_winters.py), the model's ratios to each, and the forecast plot (history, truth,
    the three forecasts)."""
    from components.data.series import forecast_metrics, read_series, seasonal_naive, window_ends
    from components.evaluate.holt_winters import holt_winters_baseline

    series, ends, h = read_series(data_dir), window_ends(data_dir, "test"), meta.horizon
    values, period = series["values"], meta.series["seasonal_period"]
    truth = values[ends[:, None] + np.arange(1, h + 1)[None, :]]
    naive = seasonal_naive(values, ends, h, period)
    hw, chosen = holt_winters_baseline(values, window_ends(data_dir, "val"), ends, h, period)
    model = forecast_metrics(truth, out)
    scores = {**model, **chosen}
    for name, pred in (("naive", naive), ("holt_winters", hw)):
        base = forecast_metrics(truth, pred)
        scores |= {f"{name}_{k}": v for k, v in base.items()}
        scores |= {f"{k}_ratio_to_{name}": model[k] / base[k] for k in ("mae", "rmse", "mape") if base[k] > 0}
    for k in (1, h):  # error growth over the horizon
        scores[f"mae_step{k}"] = float(np.abs(out[:, k - 1] - truth[:, k - 1]).mean())
    plot_forecast(
        series, ends, {"model": out, "Holt-Winters": hw, "seasonal naive": naive}, meta, plots_dir / "forecast.png"
    )
    return scores


def plot_forecast(
    series: dict[str, np.ndarray],
    ends: np.ndarray,
    forecasts: dict[str, np.ndarray],
    meta: TaskMeta,
    path: Path,
) -> None:
    """The whole series, the test span's truth, and each method's forecasts from non-overlapping test windows."""
    import pandas as pd

    dates, values, h = pd.to_datetime(series["dates"]), series["values"], meta.horizon
    test_from = pd.Timestamp(meta.series["spans"]["test"]["from"])
    fig, (ax, zoom) = plt.subplots(2, 1, figsize=(10, 7))
    for a in (ax, zoom):
        a.plot(dates, values, color="0.6", lw=0.8, label="history / truth")
        a.axvline(test_from, color="k", ls=":", lw=0.8)
    for j, i in enumerate(range(0, len(ends), h)):  # consecutive forecasts that do not overlap
        steps = dates[ends[i] + 1 : ends[i] + 1 + h]
        for (name, pred), style in zip(forecasts.items(), STYLES, strict=False):
            zoom.plot(steps, pred[i], **style, label=name if j == 0 else None)
    ax.set(title=f"{meta.dataset}: train / validation / test spans (test from {test_from.date()})", ylabel="value")
    zoom.set(title=f"Test span: {h}-step forecasts from consecutive windows", ylabel="value")
    first = max(0, ends[0] - 10)
    shown = np.concatenate([values[first:], *(p.ravel() for p in forecasts.values())])
    pad = 0.05 * float(np.ptp(shown) or 1.0)
    zoom.set_xlim(dates[first], dates[-1])
    zoom.set_ylim(float(shown.min()) - pad, float(shown.max()) + pad)
    zoom.legend(loc="upper left")
    save_figure(fig, path)
