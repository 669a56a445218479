"""Token constants every text and token-sequence module agrees on: the special tokens and their ids, the
target id that carries no loss, and the encoding rule of text classifiers (`encode`: a tokenizer's pieces
wrapped as [CLS] ... [SEP], truncated and padded). Plain values and numpy only, so data, training, evaluation
and serving share them without importing each other, and a registered text model carries this file as its own
copy (components/release/register.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

IGNORE = -100  # target id of positions that carry no loss (padding); PyTorch's cross-entropy default

# Tokenizers of text and masked_lm tasks (WordPiece, BPE, characters): ids 0..4 in every vocabulary.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD, UNK, CLS, SEP, MASK = SPECIAL_TOKENS
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(len(SPECIAL_TOKENS))

# The seq2seq word vocabulary: ids 0..3.
BOS, EOS = "[BOS]", "[EOS]"
SEQ2SEQ_SPECIALS = [PAD, BOS, EOS, UNK]


@dataclass(frozen=True)
class Encoded:
    """A batch of encoded texts, padded on the right (components/data/text/tokenization.py shows its use)."""

    ids: np.ndarray  # int64 [N, L]
    mask: np.ndarray  # int64 [N, L], 1 = real token
    lengths: np.ndarray  # int64 [N]
    truncated: np.ndarray  # bool [N]


def encode(
    tok: Any,
    texts: Sequence[str],
    max_length: int,
    *,
    add_special_tokens: bool = True,
    pad: Literal["max_length", "longest"] = "max_length",
) -> Encoded:
    """Encode `texts` into ids [N, L] with a `tokenizers.Tokenizer` whose own padding and truncation are off: the
    first max_length - 2 pieces kept between [CLS] and [SEP] (the end is dropped), padded on the right with [PAD].

    `pad="max_length"` gives L = max_length (fixed-shape arrays for a prepared split); `"longest"` pads
    only to the longest row of this batch (serving, bucketed batches). An empty text encodes to
    [CLS] [SEP] (or nothing without special tokens).
    """
    extra = 2 if add_special_tokens else 0
    if max_length <= extra:
        raise ValueError(f"max_length must be more than {extra}, got {max_length}")
    keep = max_length - extra
    pieces = [e.ids for e in tok.encode_batch(list(texts), add_special_tokens=False)]
    truncated = np.array([len(p) > keep for p in pieces], dtype=bool)
    rows = [([CLS_ID, *p[:keep], SEP_ID] if add_special_tokens else p[:keep]) for p in pieces]
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    width = max_length if pad == "max_length" else max(1, int(lengths.max(initial=0)))
    ids = np.full((len(rows), width), PAD_ID, dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
    mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
    return Encoded(ids=ids, mask=mask, lengths=lengths, truncated=truncated)
