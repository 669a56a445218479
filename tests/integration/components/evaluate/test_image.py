"""Evaluating the digits CNN: metrics per class and the plots."""

from __future__ import annotations

import json
from pathlib import Path


def test_evaluation_metrics_and_plots(digits_artifacts: Path) -> None:
    root = digits_artifacts.parents[1]
    metrics = json.loads((root / "metrics" / "digits.json").read_text())
    assert {"accuracy", "macro_f1", "log_loss", "accuracy/0", "accuracy/9"} <= set(metrics)
    assert metrics["accuracy"] >= 0.9, metrics
    for plot in ("confusion_matrix.png", "worst_misclassified.png", "learning_curves.png"):
        assert (root / "plots" / "digits" / plot).is_file(), plot
