"""Text classification evaluation: the negation behaviour test (templated positive sentences and their
negations, scored by the model)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import torch  # noqa: E402

from components.core.contract import TaskMeta

NEGATION_TEMPLATES = ("the movie was {}", "this film is {}", "the acting was {}", "it is a {} story", "{}")


POSITIVE_WORDS = ("good", "great", "funny", "moving", "wonderful", "entertaining", "beautiful", "clever")


NEGATIVE_WORDS = ("bad", "boring", "dull", "awful", "pointless", "terrible", "stupid", "tedious")


def negation_pairs() -> list[tuple[str, str, int]]:
    """(text, negated text, sign): negating a positive word should lower P(positive) (sign -1), a negative
    word raise it (+1)."""
    pairs = []
    for template in NEGATION_TEMPLATES:
        for words, sign in ((POSITIVE_WORDS, -1), (NEGATIVE_WORDS, 1)):
            pairs += [(template.format(w), template.format(f"not {w}"), sign) for w in words]
    return pairs


def negation_behaviour(head: torch.nn.Module, data_dir: Path, meta: TaskMeta) -> dict[str, float]:
    """Behaviour test: P(positive) of "X" vs "not X" over templates. `negation_flip_rate` is the share of
    pairs moved the right way; `negation_mean_shift` the mean signed move (> 0 = right way on average)."""
    from components.data.text.tokenization import encode, load_tokenizer

    positive = meta.classes.index("positive") if "positive" in meta.classes else 1
    tok, pairs = load_tokenizer(data_dir), negation_pairs()
    max_len = meta.tokenizer["max_length"]
    plain = encode(tok, [p[0] for p in pairs], max_len, pad="longest").ids
    negated = encode(tok, [p[1] for p in pairs], max_len, pad="longest").ids
    with torch.no_grad():
        p0 = head(torch.as_tensor(plain))[:, positive].numpy()
        p1 = head(torch.as_tensor(negated))[:, positive].numpy()
    moved = (p1 - p0) * np.array([p[2] for p in pairs])
    return {"negation_flip_rate": float((moved > 0).mean()), "negation_mean_shift": float(moved.mean())}
