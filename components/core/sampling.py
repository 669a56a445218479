"""Text generation from a causal LM: greedy, temperature, top-k and top-p (nucleus) sampling.

The sampler works on numpy logits with a seeded numpy generator, so the PyTorch model (with its KV cache) and
the exported ONNX step (the server: no torch there) draw the very same tokens for the same seed.
torch is imported only by `generate_torch`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Sampling:
    """temperature 0 = greedy (argmax); top_k keeps the k likeliest tokens; top_p the smallest set whose
    probability reaches p. Both filters apply after the temperature."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


def pick(logits: np.ndarray, how: Sampling, rng: np.random.Generator) -> np.ndarray:
    """Next token per row of last-position logits (B, V) -> (B,) int64."""
    if how.temperature == 0:
        return logits.argmax(-1).astype(np.int64)
    z = logits.astype(np.float64) / how.temperature  # (B, V)
    if how.top_k is not None and how.top_k < z.shape[-1]:
        kth = np.sort(z, axis=-1)[:, -how.top_k][:, None]  # (B, 1) the k-th largest
        z = np.where(z < kth, -np.inf, z)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    if how.top_p is not None and how.top_p < 1:
        order = np.argsort(-p, axis=-1, kind="stable")  # (B, V) likeliest first
        sorted_p = np.take_along_axis(p, order, -1)
        keep_sorted = np.cumsum(sorted_p, -1) - sorted_p < how.top_p  # mass before this token < p: keep it
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, -1)
        p = np.where(keep, p, 0.0)
        p /= p.sum(-1, keepdims=True)
    u = rng.random((len(p), 1))  # (B, 1)
    return np.minimum((np.cumsum(p, -1) < u).sum(-1), p.shape[-1] - 1).astype(np.int64)


def generate_torch(model: Any, ids: list[int], max_new_tokens: int, how: Sampling, seed: int) -> Iterator[int]:
    """Token ids after prompt `ids` from the PyTorch DecoderLM, with its key/value cache."""
    import torch

    rng = np.random.default_rng(seed)
    choose = lambda logits: torch.as_tensor(pick(logits.float().numpy(), how, rng))  # noqa: E731
    for token in model.generate(torch.tensor([ids]), max_new_tokens, choose):
        yield int(token[0])


def generate_onnx(
    step: Callable[[np.ndarray], np.ndarray], ids: list[int], max_new_tokens: int, how: Sampling, seed: int, window: int
) -> Iterator[int]:
    """Token ids after `ids` from an exported decoder: `step` maps ids (1, T) to logits (1, T, V). No cache in
    the graph, so each step reruns the last `window` tokens (the model's context)."""
    rng = np.random.default_rng(seed)
    ids = list(ids)
    for _ in range(max_new_tokens):
        logits = step(np.asarray([ids[-window:]], dtype=np.int64))[:, -1, :]  # (1, V)
        token = int(pick(logits, how, rng)[0])
        ids.append(token)
        yield token
