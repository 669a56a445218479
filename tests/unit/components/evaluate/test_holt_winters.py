"""The Holt-Winters baseline: its one-pass recursion forecasts exactly what statsmodels forecasts from a
fixed-parameter fit on the history before each origin, and it beats seasonal-naive on a trending series."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from components.data.series import forecast_metrics, seasonal_naive
from components.evaluate.holt_winters import HoltWinters, holt_winters_baseline, holt_winters_forecasts

PERIOD, HORIZON = 12, 5


@pytest.fixture(scope="module")
def series() -> np.ndarray:
    t = np.arange(240)
    rng = np.random.default_rng(0)
    return 100 + 0.3 * t + 4 * np.sin(2 * np.pi * t / PERIOD) + rng.normal(0, 0.5, t.size)


@pytest.mark.parametrize("phi", [1.0, 0.9])
def test_recursion_matches_statsmodels_fixed_parameter_fit(series: np.ndarray, phi: float) -> None:
    rng = np.random.default_rng(1)
    hw = HoltWinters(0.4, 0.1, 0.2, phi, 100.0, 0.3, rng.normal(0, 3, PERIOD))
    ends = np.array([30, 97, 180, 234])
    ours = holt_winters_forecasts(hw, series, ends, HORIZON)
    for row, t in zip(ours, ends, strict=True):
        fitted = ExponentialSmoothing(
            series[: t + 1],
            trend="add",
            damped_trend=phi < 1,
            seasonal="add",
            seasonal_periods=PERIOD,
            initialization_method="known",
            initial_level=hw.level,
            initial_trend=hw.trend,
            initial_seasonal=hw.seasons,
        ).fit(
            smoothing_level=hw.alpha,
            smoothing_trend=hw.beta,
            smoothing_seasonal=hw.gamma,
            damping_trend=phi if phi < 1 else None,
            optimized=False,
        )
        np.testing.assert_allclose(row, fitted.forecast(HORIZON), rtol=0, atol=1e-9)


def test_baseline_uses_only_the_past_and_beats_seasonal_naive(series: np.ndarray) -> None:
    val_ends, test_ends = np.arange(150, 180), np.arange(190, 234)
    pred, chosen = holt_winters_baseline(series, val_ends, test_ends, HORIZON, PERIOD)
    truth = series[test_ends[:, None] + np.arange(1, HORIZON + 1)[None, :]]
    naive = seasonal_naive(series, test_ends, HORIZON, PERIOD)
    assert pred.shape == truth.shape
    assert chosen["holt_winters_damped"] in (0.0, 1.0)
    assert forecast_metrics(truth, pred)["mae"] < 0.5 * forecast_metrics(truth, naive)["mae"]
    # changing the future after an origin cannot change the forecasts made there
    future = series.copy()
    future[test_ends[0] + 1 :] += 50
    again, _ = holt_winters_baseline(future, val_ends, test_ends[:1], HORIZON, PERIOD)
    np.testing.assert_allclose(again[0], pred[0])
