"""BERT's masked-language-model corruption: pick 15% of the real tokens; of those, 80% become [MASK], 10% a
random token, 10% stay as they are. The model must predict the original token at every picked position (the
targets elsewhere are IGNORE, so they carry no loss)."""

from __future__ import annotations

import numpy as np

from components.core.tokens import IGNORE


def mask_tokens(
    ids: np.ndarray,
    maskable: np.ndarray,
    mask_id: int,
    first_normal_id: int,
    vocab_size: int,
    rng: np.random.Generator,
    rate: float = 0.15,
) -> tuple[np.ndarray, np.ndarray]:
    """ids (N, T) -> corrupted inputs (N, T) and targets (N, T). `maskable` (N, T) is False on [CLS], [SEP],
    [PAD]; random replacements are drawn from the normal tokens first_normal_id .. vocab_size - 1."""
    picked = (rng.random(ids.shape) < rate) & maskable  # (N, T)
    targets = np.where(picked, ids, IGNORE)
    roll = rng.random(ids.shape)
    x = ids.copy()
    x[picked & (roll < 0.8)] = mask_id
    swap = picked & (roll >= 0.8) & (roll < 0.9)
    x[swap] = rng.integers(first_normal_id, vocab_size, int(swap.sum()))
    return x, targets
