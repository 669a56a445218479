"""Evaluate step: test-split metrics to metrics/<task>.json and plots to plots/<task>/, logged to MLflow.

What is scored and plotted depends on the task's kind (meta.json), through the SCORERS registry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from components.core.contract import TaskMeta, load_meta  # noqa: E402
from components.data.splits import load_split
from components.evaluate.image import per_class_accuracy, plot_worst
from components.evaluate.metrics import classification_metrics, regression_metrics
from components.evaluate.plots import (
    plot_confusion,
    plot_gradient_heatmap,
    plot_learning_curves,
    plot_predictions,
    plot_roc,
    read_history,
)
from components.evaluate.report import publish
from components.evaluate.series import forecast_scores
from components.evaluate.text import negation_behaviour
from components.train.batches import predict  # noqa: E402
from components.train.checkpoint import load_trained  # noqa: E402
from components.train.objectives import OutputHead  # noqa: E402

Scorer = Callable[[TaskMeta, Path, nn.Module, np.ndarray, np.ndarray, np.ndarray, Path], dict[str, float]]


def _score_tabular(meta: TaskMeta, data_dir: Path, model: nn.Module, x, y, out, plots_dir: Path) -> dict[str, float]:
    if meta.objective == "regression":
        truth = y * meta.target_scaler["scale"] + meta.target_scaler["mean"]
        plot_predictions(truth, out[:, 0], plots_dir / "predicted_vs_actual.png")
        return regression_metrics(truth, out[:, 0])
    return _classified(meta, y, out, plots_dir)


def _score_image(meta: TaskMeta, data_dir: Path, model: nn.Module, x, y, out, plots_dir: Path) -> dict[str, float]:
    scores = _classified(meta, y, out, plots_dir) | per_class_accuracy(y, out.argmax(1), meta.classes)
    plot_worst(x, y, out, meta, plots_dir / "worst_misclassified.png")
    return scores


def _score_series(meta: TaskMeta, data_dir: Path, model: nn.Module, x, y, out, plots_dir: Path) -> dict[str, float]:
    return forecast_scores(data_dir, meta, out, plots_dir)


def _score_text(meta: TaskMeta, data_dir: Path, model: nn.Module, x, y, out, plots_dir: Path) -> dict[str, float]:
    scores = _classified(meta, y, out, plots_dir)
    if meta.objective == "binary":  # the negation behaviour test
        scores |= negation_behaviour(OutputHead(model, meta).eval(), data_dir, meta)
    return scores


def _classified(meta: TaskMeta, y: np.ndarray, out: np.ndarray, plots_dir: Path) -> dict[str, float]:
    plot_confusion(y, out.argmax(1), meta.classes, plots_dir / "confusion_matrix.png")
    if meta.objective == "binary":
        plot_roc(y, out[:, 1], plots_dir / "roc.png")
    return classification_metrics(y, out, meta.classes)


SCORERS: dict[str, Scorer] = {  # kind -> its scores and plots (kind tokens: components/evaluate/tokens.py)
    "tabular": _score_tabular,
    "image": _score_image,
    "series": _score_series,
    "text": _score_text,
}


def evaluate(data_dir: Path, model_dir: Path, metrics_path: Path, plots_dir: Path) -> dict[str, float]:
    """Score the trained model on the test split; write metrics JSON and plots; log both to the run."""
    if load_meta(data_dir).kind == "tokens":  # losses, generation, attention maps
        from components.evaluate.tokens import evaluate_sequences

        return evaluate_sequences(data_dir, model_dir, metrics_path, plots_dir)
    model, meta = load_trained(model_dir)
    if meta.kind == "image":  # channels-last convolutions, as in training: Fashion's test split 17 s -> 11 s (1 thread)
        model.to(memory_format=torch.channels_last)
    x, y = load_split(data_dir, "test")
    with torch.no_grad():
        out = predict(OutputHead(model, meta), torch.as_tensor(x), pad_id=getattr(model, "pad_id", None))
        out = out.numpy().astype(np.float64)

    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    scores = SCORERS[meta.kind](meta, Path(data_dir), model, x, y, out, plots_dir)
    history = read_history(Path(model_dir) / "history.csv")
    plot_learning_curves(history, plots_dir / "learning_curves.png")
    if any(k.startswith("grad_norm/") for k in history[0]):
        plot_gradient_heatmap(history, plots_dir / "gradient_norms.png")

    return publish(scores, metrics_path, plots_dir, model_dir)
