"""The train step: word2vec vectors stay frozen, a diverging loss fails the MLflow run and keeps the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.config import PrepareConfig


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


def test_diverging_loss_fails_the_run_and_keeps_the_checkpoint(workdir: Path) -> None:
    """A NaN/Inf loss mid-training stops with a clear error, the MLflow run is FAILED, the checkpoint stays."""
    from components.config import TrainConfig
    from components.train.loop import TrainingError
    from components.train.step import train

    art = workdir / "artifacts" / "tabular"
    good = {"epochs": 2, "model": {"hidden": [8]}, "early_stopping": {"enabled": False}}
    train(art / "data", art, TrainConfig.model_validate(good), "tabular", progress=False)
    before = (art / "checkpoint.pt").read_bytes()
    diverging = TrainConfig.model_validate({**good, "optimizer": "gd", "lr": 1e38, "epochs": 5})
    with pytest.raises(TrainingError, match="loss became"):
        train(art / "data", art, diverging, "tabular", progress=False)
    assert (art / "checkpoint.pt").read_bytes() == before

    import mlflow

    run_id = json.loads((art / "run.json").read_text())["run_id"]
    assert mlflow.MlflowClient().get_run(run_id).info.status == "FAILED"
