"""Sampling rules (temperature, top-k, top-p) and their seed."""

from __future__ import annotations

import numpy as np
import pytest

from components.core.sampling import Sampling, pick


def test_sampling_rules_and_seed() -> None:
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    rng = np.random.default_rng(0)
    assert pick(logits, Sampling(temperature=0), rng)[0] == 0
    assert {int(pick(logits, Sampling(top_k=2), rng)[0]) for _ in range(200)} == {0, 1}
    assert {int(pick(logits, Sampling(top_p=0.7), rng)[0]) for _ in range(200)} == {0, 1}  # 0.5 + 0.3 reaches 0.7
    assert {int(pick(logits, Sampling(top_p=0.1), rng)[0]) for _ in range(50)} == {0}
    draws = [pick(logits, Sampling(temperature=1.5), np.random.default_rng(7))[0] for _ in range(2)]
    assert draws[0] == draws[1]
    counts = np.bincount([pick(logits, Sampling(), rng)[0] for _ in range(3000)], minlength=4) / 3000
    assert np.allclose(counts, [0.5, 0.3, 0.15, 0.05], atol=0.04)
    with pytest.raises(ValueError, match="top_p"):
        Sampling(top_p=0)
