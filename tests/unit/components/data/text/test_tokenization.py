"""Tokenizers shared by the sequence and transformer tasks: round trips, special ids, truncation, padding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from components.data.text.tokenization import (
    CLS_ID,
    KINDS,
    PAD_ID,
    SEP_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    decode,
    encode,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
)

CORPUS = [
    "a wonderful, moving film",
    "not good at all",
    "the plot is dull and the acting is bad",
    "good fun for the whole family",
    "I loved every minute of it",
    "a boring, pointless mess",
] * 5


@pytest.mark.parametrize("kind", KINDS)
def test_tokenizer_kinds_round_trip_with_fixed_special_ids(kind: str, tmp_path: Path) -> None:
    tok = train_tokenizer(CORPUS, kind=kind, vocab_size=200, min_frequency=1)
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    enc = encode(tok, ["not good at all", ""], max_length=32)
    assert enc.ids.shape == (2, 32) and enc.ids.dtype == np.int64
    assert enc.ids[0, 0] == CLS_ID and enc.ids[0, enc.lengths[0] - 1] == SEP_ID
    assert enc.ids[1, :3].tolist() == [CLS_ID, SEP_ID, PAD_ID]  # empty text: [CLS] [SEP]
    assert (enc.mask.sum(1) == enc.lengths).all()
    assert decode(tok, enc.ids[0]).replace(" ", "") == "notgoodatall"
    save_tokenizer(tok, tmp_path)
    again = load_tokenizer(tmp_path)
    assert (encode(again, ["not good at all"], 32).ids == enc.ids[:1]).all()


def test_truncation_keeps_the_start_and_padding_modes() -> None:
    tok = train_tokenizer(CORPUS, kind="wordpiece", vocab_size=200, min_frequency=1)
    long = " ".join(["good"] * 50)
    enc = encode(tok, [long, "bad"], max_length=10)
    assert enc.truncated.tolist() == [True, False]
    assert enc.ids[0].tolist() == [CLS_ID] + [tok.token_to_id("good")] * 8 + [SEP_ID]
    assert encode(tok, ["bad", "good fun"], 10, pad="longest").ids.shape == (2, 4)
    raw = encode(tok, ["good fun"], 10, add_special_tokens=False)
    assert raw.ids[0, :2].tolist() == [tok.token_to_id("good"), tok.token_to_id("fun")]


def test_unknown_characters() -> None:
    wp = train_tokenizer(CORPUS, kind="wordpiece", vocab_size=200, min_frequency=1)
    assert UNK_ID in encode(wp, ["\u6f22\u5b57"], 8).ids[0]
    bpe = train_tokenizer(CORPUS, kind="bpe", vocab_size=300, min_frequency=1)
    assert UNK_ID not in encode(bpe, ["\u6f22\u5b57 \U0001f600"], 32).ids[0]  # byte level: nothing unknown


def test_wordpiece_training_gives_the_same_tokenizer_every_time() -> None:
    """The same texts give the same vocabulary and ids (huggingface/tokenizers#1794: the trainer numbered its `##`
    pieces in hash-map order); the `##` pieces it needs are plain vocabulary, not special tokens."""
    words = " ".join(f"{a}{b}{c}" for a in "bcdfg" for b in "aeiou" for c in "lmnrst")  # 150 words of equal count
    texts = [words, "a wonderful, moving film about ##hashes", *CORPUS]
    first = train_tokenizer(texts, kind="wordpiece", vocab_size=120, min_frequency=1)
    for _ in range(4):
        assert train_tokenizer(texts, kind="wordpiece", vocab_size=120, min_frequency=1).to_str() == first.to_str()
    assert first.token_to_id("##a") is not None
    assert first.encode("##a", add_special_tokens=False).tokens == ["#", "#", "a"]
    assert decode(first, first.encode("bal fun").ids) == "bal fun"
