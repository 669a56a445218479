"""Attention maps: per layer and head, how much each query token attends to each key token, as heat-maps."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LABELLED = 40  # tick labels only up to this many tokens


Map = tuple[str, np.ndarray, list[str], list[str]]  # name, weights (H, T, S), query tokens (T), key tokens (S)


def plot_attention(maps: list[Map], path: Path, title: str) -> Path:
    """One row per attention module, one column per head; rows are queries, columns the keys they weigh."""
    heads = max(w.shape[0] for _, w, _, _ in maps)
    fig, axes = plt.subplots(len(maps), heads, figsize=(2.4 * heads, 2.4 * len(maps)), squeeze=False)
    for row, (name, weights, queries, keys) in enumerate(maps):
        for h in range(heads):
            ax = axes[row, h]
            ax.imshow(weights[h], cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(f"{name} head {h}", fontsize=7)
            _ticks(ax.set_xticks, keys, 90)
            _ticks(ax.set_yticks, queries, 0)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def _ticks(setter, tokens: list[str], rotation: int) -> None:
    if len(tokens) <= LABELLED:
        setter(range(len(tokens)), [repr(t)[1:-1] for t in tokens], fontsize=5, rotation=rotation)
    else:
        setter([])
