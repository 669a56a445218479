"""Image evaluation: accuracy per class and a grid of the most confident mistakes."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from components.core.contract import TaskMeta
from components.evaluate.plots import save_figure

WORST = 24  # misclassified test images shown, most confident mistakes first


def per_class_accuracy(y: np.ndarray, pred: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Recall of each class, as `accuracy/<class name>`."""
    return {f"accuracy/{name}": float((pred[y == k] == k).mean()) for k, name in enumerate(classes) if (y == k).any()}


def plot_worst(x: np.ndarray, y: np.ndarray, proba: np.ndarray, meta: TaskMeta, path: Path) -> None:
    """The most confident mistakes: image, true class, predicted class and its probability."""
    pred = proba.argmax(1)
    wrong = np.flatnonzero(pred != y)
    worst = wrong[np.argsort(-proba[wrong, pred[wrong]], kind="stable")][:WORST]
    cols = 8
    rows = max(1, -(-len(worst) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.5, rows * 1.7), squeeze=False)
    mean, std = (np.asarray(meta.preprocessing[k]).reshape(-1, 1, 1) for k in ("mean", "std"))
    classes = meta.classes
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, worst, strict=False):
        image = np.clip(x[i] * std + mean, 0, 1).transpose(1, 2, 0)  # (H, W, C) in 0..1
        ax.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{classes[y[i]]}\n-> {classes[pred[i]]} {proba[i, pred[i]]:.2f}", fontsize=7)
    fig.suptitle(f"Worst misclassified test images ({len(wrong)} wrong of {len(y)})", fontsize=9)
    save_figure(fig, path)
