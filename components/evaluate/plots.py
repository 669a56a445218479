"""Plots every evaluation shares: learning curves, per-layer gradient norms, confusion matrix, ROC curve,
predicted vs actual. Each writes one PNG. scikit-learn (1-2 s of import) is loaded by the classifier plots only:
forecasts and token models never need it.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_figure(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(y: np.ndarray, pred: np.ndarray, classes: list[str], path: Path) -> None:
    from sklearn import metrics as skm

    fig, ax = plt.subplots(figsize=(4 + 0.4 * len(classes), 3.5 + 0.4 * len(classes)))
    skm.ConfusionMatrixDisplay.from_predictions(
        y, pred, labels=list(range(len(classes))), display_labels=classes, ax=ax, colorbar=False
    )
    ax.set_title("Confusion matrix (test)")
    save_figure(fig, path)


def plot_roc(y: np.ndarray, score: np.ndarray, path: Path) -> None:
    from sklearn import metrics as skm

    fig, ax = plt.subplots(figsize=(4.5, 4))
    skm.RocCurveDisplay.from_predictions(y, score, ax=ax)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_title("ROC (test)")
    save_figure(fig, path)


def plot_predictions(truth: np.ndarray, pred: np.ndarray, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.scatter(truth, pred, s=12, alpha=0.7)
    lo, hi = float(min(truth.min(), pred.min())), float(max(truth.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual (test)")
    save_figure(fig, path)


def read_history(history_csv: Path) -> list[dict[str, float]]:
    with open(history_csv) as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def plot_learning_curves(history: list[dict[str, float]], path: Path) -> None:
    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for key in ("train_loss", "val_loss"):
        ax.plot(epochs, [r[key] for r in history], label=key)
    ax.set(xlabel="epoch", ylabel="loss", title="Learning curves")
    ax.legend()
    save_figure(fig, path)


def plot_gradient_heatmap(history: list[dict[str, float]], path: Path) -> None:
    """Layer x epoch map of log10 mean gradient norms: vanishing layers show as a dark band."""
    layers = [k for k in history[0] if k.startswith("grad_norm/")]
    grid = np.log10(np.array([[max(r[k], 1e-30) for r in history] for k in layers]))
    fig, ax = plt.subplots(figsize=(6, 1.2 + 0.35 * len(layers)))
    image = ax.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_yticks(range(len(layers)), [k.removeprefix("grad_norm/") for k in layers], fontsize=8)
    ax.set(xlabel="epoch", title="log10 gradient norm per layer")
    fig.colorbar(image, ax=ax)
    save_figure(fig, path)
