"""Masked-LM corruption: 15% of tokens picked, 80/10/10."""

from __future__ import annotations

import numpy as np


def test_masking_rule_is_15_percent_80_10_10() -> None:
    from components.core.tokens import IGNORE
    from components.data.text.mlm import mask_tokens

    rng = np.random.default_rng(0)
    ids = rng.integers(5, 1000, (400, 64))
    maskable = np.ones_like(ids, dtype=bool)
    maskable[:, 0] = False  # [CLS]
    x, y = mask_tokens(ids, maskable, mask_id=4, first_normal_id=5, vocab_size=1000, rng=rng)
    picked = y != IGNORE
    assert not picked[:, 0].any() and abs(picked.mean() - 0.15 * 63 / 64) < 0.005
    assert np.array_equal(y[picked], ids[picked])
    masked, kept = (x[picked] == 4).mean(), (x[picked] == ids[picked]).mean()
    assert abs(masked - 0.8) < 0.02 and abs(kept - 0.1) < 0.02  # the rest (~10%) became random tokens
    assert np.array_equal(x[~picked], ids[~picked])
