"""The FFN learns each head on real data (tabular, wine, diabetes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_task


def metrics_of(artifacts: Path) -> dict:
    return json.loads((artifacts.parents[1] / "metrics" / f"{artifacts.name}.json").read_text())


def test_tabular_accuracy_floor(tabular_artifacts: Path) -> None:
    metrics = metrics_of(tabular_artifacts)
    assert metrics["accuracy"] >= 0.95 and metrics["roc_auc"] >= 0.98, metrics


@pytest.mark.parametrize(
    ("task", "metric", "floor"), [("tabular_wine", "macro_f1", 0.9), ("tabular_diabetes", "r2", 0.3)]
)
def test_other_heads_learn(task: str, metric: str, floor: float, tmp_path: Path) -> None:
    """Softmax + cross-entropy (wine) and a linear output + MSE (diabetes) from the same FFN code."""
    assert metrics_of(run_task(task, tmp_path))[metric] >= floor
