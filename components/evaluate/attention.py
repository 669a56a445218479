"""Attention maps: per layer and head, how much each query token attends to each key token, as heat-maps."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LABELLED = 40  # tick labels only up to this many tokens


Map = tuple[str, np.ndarray, list[str], list[str]]  # name, weights (H, T, S), query tokens (T), key tokens (S)


CELL = (2.1, 1.8)  # inches of one heat-map
CHAR = 0.045  # inches of one character of a 5-point tick label


def plot_attention(maps: list[Map], path: Path, title: str) -> Path:
    """One row per attention module, one column per head; rows are queries, columns the keys they weigh. Every
    map fills its cell (a cross-attention map of 7 targets by 16 sources is as tall as a square one), and a row's
    queries are labelled once, on its first head; keys under every row, or only under the last when all rows
    weigh the same keys (a self-attention stack). Ticks are most of a figure's time (matplotlib makes each one an
    artist: 1,024 ticks took 2 of a 16-map figure's 3 s). The margins are sized in inches from the longest labels,
    not by tight_layout, which measures every label once more (0.9-2 s of a 3-5 s figure)."""
    heads, rows = max(w.shape[0] for _, w, _, _ in maps), len(maps)
    shared_keys = all(keys == maps[0][3] for _, _, _, keys in maps)
    left = 0.15 + max(_reach(queries) for _, _, queries, _ in maps)
    gap = 0.3 + (0.1 if shared_keys else max(_reach(keys) for _, _, _, keys in maps))  # key labels, next titles
    bottom, top, space = 0.1 + _reach(maps[-1][3]), 0.6, 0.15  # top: the title, then the first row's titles
    width = left + heads * CELL[0] + (heads - 1) * space + 0.1
    height = top + rows * CELL[1] + (rows - 1) * gap + bottom
    fig, axes = plt.subplots(rows, heads, figsize=(width, height), squeeze=False)
    for row, (name, weights, queries, keys) in enumerate(maps):
        for h in range(heads):
            ax = axes[row, h]
            ax.imshow(weights[h], cmap="viridis", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
            ax.set_title(f"{name} head {h}", fontsize=7)
            _ticks(ax.set_xticks, keys if row == rows - 1 or not shared_keys else [], 90)
            _ticks(ax.set_yticks, queries if h == 0 else [], 0)
    fig.suptitle(title, fontsize=9, y=1 - 0.08 / height)
    fig.subplots_adjust(
        left=left / width,
        right=1 - 0.1 / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=space / CELL[0],
        hspace=gap / CELL[1],
    )
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def _label(token: str) -> str:
    return repr(token)[1:-1]  # a newline or a tab shows as \n, \t


def _reach(tokens: list[str]) -> float:
    """How far the labels of these tokens reach from their axis, in inches (none past LABELLED tokens)."""
    return 0.1 + (CHAR * max(map(len, map(_label, tokens)), default=0) if len(tokens) <= LABELLED else 0)


def _ticks(setter, tokens: list[str], rotation: int) -> None:
    """A tick and a label per token (none past LABELLED tokens; [] for none)."""
    if 0 < len(tokens) <= LABELLED:
        setter(range(len(tokens)), [_label(t) for t in tokens], fontsize=5, rotation=rotation)
    else:
        setter([])
