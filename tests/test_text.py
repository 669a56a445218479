"""Text pieces shared by the sequence and transformer tasks: tokenizers, text ingest, text prepare."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.config import PrepareConfig
from components.core.errors import DataError
from components.data.ingest import ingest, ingest_series_csv, ingest_text_csv
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


def test_shared_text_datasets(tmp_path: Path) -> None:
    vader = pd.read_csv(ingest("vader_movie", tmp_path) / "data.csv")
    assert len(vader) == 10_568 and set(vader["target"]) == {"positive", "negative"}
    assert ((vader["rating"] > 0) == (vader["target"] == "positive")).all()
    uci = pd.read_csv(ingest("uci_sentences", tmp_path) / "data.csv", keep_default_na=False)
    assert len(uci) == 3000 and (uci["target"] == "positive").sum() == 1500
    assert uci.groupby("source").size().tolist() == [1000, 1000, 1000]


def test_user_text_csv(tmp_path: Path) -> None:
    src = tmp_path / "mine.csv"
    pd.DataFrame({"review": ["great", "awful", "fine"], "stars": ["pos", "neg", "pos"]}).to_csv(src, index=False)
    out = ingest_text_csv(src, "mine", tmp_path / "raw", text="review", label="stars")
    assert pd.read_csv(out / "data.csv").columns.tolist() == ["text", "target"]
    with pytest.raises(DataError, match="no 'text'"):
        ingest_text_csv(src, "mine", tmp_path / "raw")
    src.write_bytes(b"text,label\n\xff\xfe bad bytes,1\nok,0\n")
    with pytest.raises(DataError, match="UTF-8"):
        ingest_text_csv(src, "mine", tmp_path / "raw")
    src.write_text("text,label\n ,1\nok,0\n")
    with pytest.raises(DataError, match="empty"):
        ingest_text_csv(src, "mine", tmp_path / "raw")


def test_user_series_csv(tmp_path: Path) -> None:
    src = tmp_path / "s.csv"
    src.write_text("when,y\n2020-01-03,2\n2020-01-01,1\n2020-01-02,\n")
    out = ingest_series_csv(src, "s", tmp_path / "raw", time="when", value="y")
    frame = pd.read_csv(out / "data.csv")
    assert frame["date"].tolist() == ["2020-01-01", "2020-01-02", "2020-01-03"]
    assert np.isnan(frame["value"][1])
    src.write_text("date,value\n2020-01-01,1\nnot a date,2\n")
    with pytest.raises(DataError, match="not a date"):
        ingest_series_csv(src, "s", tmp_path / "raw")
    src.write_text("date,value\n2020-01-01,1\n2020-01-02,abc\n")
    with pytest.raises(DataError, match="non-numeric"):
        ingest_series_csv(src, "s", tmp_path / "raw")


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
    assert meta.input == {"name": "tokens", "dtype": "int64", "shape": [None, None]}
    x, y = load_split(tmp_path / "data", "train")
    assert x.shape == (meta.splits["train"], 8) and x.dtype == np.int64
    tok = load_tokenizer(tmp_path / "data")
    vocab = set(tok.get_vocab())
    test_only = {t.split()[0] for t in load_texts(tmp_path / "data", "test")}
    assert not (test_only & vocab)  # words seen only in test are not in the vocabulary
    assert np.load(tmp_path / "data" / "word2vec.npy").shape == (meta.tokenizer["vocab_size"], 8)


def test_training_starts_from_frozen_word2vec_vectors(tmp_path: Path) -> None:
    import torch

    from components.config import TrainConfig
    from components.data.prepare import prepare
    from components.train.checkpoint import load_trained
    from components.train.step import train

    raw = tmp_path / "raw" / "toy"
    raw.mkdir(parents=True)
    texts = [f"w{i}x is {'good' if i % 2 else 'bad'}" for i in range(60)]
    pd.DataFrame({"text": texts, "target": ["pos" if i % 2 else "neg" for i in range(60)]}).to_csv(
        raw / "data.csv", index=False
    )
    cfg = PrepareConfig(dataset="toy", objective="binary", text={"min_frequency": 1, "word2vec_dim": 8})
    prepare(tmp_path / "raw", tmp_path / "art" / "data", cfg, "toy")
    model = {"name": "rnn", "cell": "gru", "hidden": 4, "embedding_dim": 8, "embeddings": "word2vec_frozen"}
    train(tmp_path / "art" / "data", tmp_path / "art", TrainConfig(model=model, epochs=2), "toy", progress=False)
    trained, _ = load_trained(tmp_path / "art")
    vectors = torch.as_tensor(np.load(tmp_path / "art" / "data" / "word2vec.npy"))
    assert torch.equal(trained.embedding.weight, vectors)  # frozen: exactly the prepare step's vectors
