"""The recurrent model family: heads, and masks that keep padding out."""

from __future__ import annotations

import pytest
import torch

from components.config import RNNConfig, TrainConfig
from models import build_model, summarize
from models.rnn import CELLS, reverse_within_length


def test_reverse_within_length_keeps_padding_in_place() -> None:
    x = torch.tensor([[1, 2, 3, 0, 0], [4, 5, 6, 7, 8]]).unsqueeze(-1)
    out = reverse_within_length(x, torch.tensor([3, 5])).squeeze(-1)
    assert out.tolist() == [[3, 2, 1, 0, 0], [8, 7, 6, 5, 4]]


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pool", ["last", "mean", "max"])
def test_padding_never_changes_a_rows_result(cell: str, bidirectional: bool, pool: str) -> None:
    torch.manual_seed(0)
    model = build_model("rnn", out_features=2, vocab_size=50, cell=cell, hidden=8, layers=2,
                        bidirectional=bidirectional, pool=pool, embedding_dim=6).eval()  # fmt: skip
    ids = torch.tensor([[2, 11, 12, 13, 3]])
    padded = torch.cat([ids, torch.zeros(1, 9, dtype=torch.long)], dim=1)
    batch = torch.stack([padded[0], torch.randint(5, 50, (14,))])  # a longer neighbour in the batch
    with torch.no_grad():
        alone, with_pad, in_batch = model(ids), model(padded), model(batch)[:1]
    torch.testing.assert_close(alone, with_pad, atol=1e-6, rtol=0)
    torch.testing.assert_close(alone, in_batch, atol=1e-6, rtol=0)


def test_heads_shapes_and_per_step_masking() -> None:
    m2m = build_model("rnn", out_features=3, vocab_size=20, head="many_to_many", hidden=4, embedding_dim=4).eval()
    ids = torch.tensor([[2, 7, 8, 3, 0, 0]])
    out = m2m(ids)
    assert out.shape == (1, 6, 3) and out[0, 4:].abs().sum() == 0  # padded steps give 0
    assert m2m.train()(ids).shape == (1, 4, 3)  # training cuts the batch to its longest real row
    gen = build_model("rnn", out_features=2, in_features=5, head="one_to_many", steps=6, cell="gru", hidden=4)
    assert gen(torch.randn(3, 5)).shape == (3, 6, 2)
    series = build_model("rnn", out_features=8, in_features=1, last_value_residual=True, hidden=4)
    flat = torch.full((2, 10, 1), 3.0)
    # a flat history reads as zeros relative to its last value: the forecast is last value + a constant
    torch.testing.assert_close(series(flat) - 3.0, series(torch.zeros(2, 10, 1)))
    with pytest.raises(ValueError, match="bidirectional"):
        RNNConfig(head="one_to_many", bidirectional=True)
    assert TrainConfig(model={"name": "rnn", "cell": "gru"}).model.cell == "gru"
    text = summarize(m2m, [None, None], "int64")
    assert "LSTM" in text and "total parameters" in text


def test_word2vec_vectors_load_frozen_or_not() -> None:
    model = build_model("rnn", out_features=1, vocab_size=10, embedding_dim=4)
    vectors = torch.randn(10, 4)
    model.load_embeddings(vectors, freeze=True)
    assert torch.equal(model.embedding.weight, vectors) and not model.embedding.weight.requires_grad
    with pytest.raises(ValueError, match="do not fit"):
        model.load_embeddings(torch.randn(9, 4))
