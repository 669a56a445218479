"""Prepare (texts): the tokenizer and word2vec see the train split only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from components.config import PrepareConfig
from components.data.text.tokenization import (
    load_tokenizer,
)


def test_prepare_text_trains_the_tokenizer_on_train_only(tmp_path: Path) -> None:
    from components.data.prepare import prepare
    from components.data.splits import load_split
    from components.data.text.prepare import load_texts

    raw = tmp_path / "raw" / "toy"
    words = [f"w{i}x" for i in range(10, 50)]
    texts = [f"{w} is good" if i % 2 else f"{w} is bad" for i, w in enumerate(words * 3)]
    raw.mkdir(parents=True)
    pd.DataFrame({"text": texts, "target": ["pos" if i % 2 else "neg" for i in range(len(texts))]}).to_csv(
        raw / "data.csv", index=False
    )
    cfg = PrepareConfig(
        dataset="toy", objective="binary", text={"max_length": 8, "min_frequency": 1, "word2vec_dim": 8}
    )
    meta = prepare(tmp_path / "raw", tmp_path / "data", cfg, "toy")
    assert meta.splits["train"] + meta.splits["val"] + meta.splits["test"] == 40  # duplicates dropped
    assert meta.input.model_dump() == {"name": "tokens", "dtype": "int64", "shape": [None, None]}
    x, y = load_split(tmp_path / "data", "train")
    assert x.shape == (meta.splits["train"], 8) and x.dtype == np.int64
    tok = load_tokenizer(tmp_path / "data")
    vocab = set(tok.get_vocab())
    test_only = {t.split()[0] for t in load_texts(tmp_path / "data", "test")}
    assert not (test_only & vocab)  # words seen only in test are not in the vocabulary
    assert np.load(tmp_path / "data" / "word2vec.npy").shape == (meta.tokenizer["vocab_size"], 8)
