"""The encoder study: masked-LM pretraining, fine-tuning against scratch, exported graphs, the served encoder."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from components.config import LMConfig, PrepareConfig, TrainConfig
from components.data.ingest import shared_datasets
from tests.helpers.serving import bentoml_server
from tests.helpers.text import SHAKESPEARE, VADER


@pytest.fixture(scope="module")
def encoder_study_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny masked-LM pretraining on 150k characters, then encoder_study on 400 VADER snippets (registered)."""
    if not SHAKESPEARE.is_file() or not VADER.is_dir():
        pytest.skip(f"tiny Shakespeare or VADER snippets not found under {shared_datasets()}")
    from components.data.ingest import ingest, ingest_text
    from components.data.prepare import prepare
    from components.experiments.encoder import EncoderStudyConfig, encoder_study
    from components.train.step import train

    root = tmp_path_factory.mktemp("encoder")
    corpus = root / "corpus.txt"
    corpus.write_text(SHAKESPEARE.read_text()[:150_000])
    ingest_text(corpus, "corpus", root / "data/raw")
    ingest("vader_movie", root / "data/raw")
    mlm = root / "artifacts/encoder_mlm"
    lm = LMConfig(block_size=32, vocab_size=600, val_windows=32, mask_copies=2)
    prepare(root / "data/raw", mlm / "data", PrepareConfig(dataset="corpus", objective="masked_lm", lm=lm), "mlm")
    model = {"name": "transformer", "arch": "encoder", "head": "mlm", "d_model": 32, "n_layers": 2, "n_heads": 2}
    quick = {"epochs": 2, "steps_per_epoch": 8, "batch_size": 16, "gradients": {"track": False}}
    train(mlm / "data", mlm, TrainConfig.model_validate({**quick, "model": model}), "mlm", progress=False)
    cfg = EncoderStudyConfig(pretrained=str(mlm), train_limit=400, train=quick)
    encoder_study(root / "data/raw", root / "artifacts/encoder", root / "metrics/encoder_finetune.json", cfg)
    return root


def test_mlm_training_windows_are_masked_once_per_copy(encoder_study_root: Path) -> None:
    from components.core.tokens import IGNORE
    from components.data.splits import load_split

    x, y = load_split(encoder_study_root / "artifacts/encoder_mlm/data", "train")
    x, y = np.asarray(x), np.asarray(y)
    original = np.where(y != IGNORE, y, x)  # the uncorrupted window: targets where picked, inputs elsewhere
    first, second = np.split(original, 2)
    assert len(first) > 100 and (first == second).all()  # the same windows twice ...
    picked = y != IGNORE
    assert (np.split(picked, 2)[0] != np.split(picked, 2)[1]).mean() > 0.1  # ... with different masks


def test_encoder_study_compares_exports_and_serves(encoder_study_root: Path, tmp_path: Path) -> None:
    results = json.loads((encoder_study_root / "metrics/encoder_finetune.json").read_text())
    assert {"pretrained", "scratch", "pretraining"} <= set(results) and results["onnx_parity_max_abs_diff"] <= 1e-4
    assert (encoder_study_root / "artifacts/encoder/finetune_curves.png").stat().st_size > 10_000
    art = encoder_study_root / "artifacts/encoder"
    index = json.loads((art / "graphs/index.json").read_text())["graphs"]
    assert sorted(index) == ["attention.onnx", "embeddings.onnx"] and all((art / "graphs" / g).is_file() for g in index)
    with bentoml_server("serving.app:Service", "encoder", tmp_path) as url, httpx.Client(base_url=url) as http:
        texts = ["a gripping, beautifully acted film", "dull and far too long"]
        answers = http.post("/classify", json={"texts": texts}, timeout=30).json()
        assert [sorted(a["probabilities"]) for a in answers] == [["negative", "positive"]] * 2
        for pooling in ("cls", "mean"):
            vectors = http.post("/embed", json={"texts": texts, "pooling": pooling}, timeout=30).json()
            assert len(vectors) == 2 and len(vectors[0]["vector"]) == 32
        maps = http.post("/attention", json={"text": texts[0]}, timeout=30).json()
        assert maps["tokens"][0] == "[CLS]" and np.asarray(maps["weights"]).shape[:2] == (2, 2)
        too_many = http.post("/classify", json={"texts": ["ok"] * 65}, timeout=30)
        assert too_many.status_code == 400 and "texts" in too_many.text
        assert http.post("/embed", json={"texts": ["x" * 6000]}, timeout=30).status_code == 400
