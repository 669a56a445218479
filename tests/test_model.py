"""Model behaviour: the FFN learns each head on real data, ONNX matches PyTorch, champion promotion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from components.config import RegisterConfig
from components.data.splits import load_split
from components.release.export import run_onnx
from components.release.register import register
from components.train.checkpoint import load_trained
from components.train.objectives import OutputHead
from tests.conftest import run_task


def metrics_of(artifacts: Path) -> dict:
    return json.loads((artifacts.parents[1] / "metrics" / f"{artifacts.name}.json").read_text())


def test_tabular_accuracy_floor(tabular_artifacts: Path) -> None:
    metrics = metrics_of(tabular_artifacts)
    assert metrics["accuracy"] >= 0.95 and metrics["roc_auc"] >= 0.98, metrics


@pytest.mark.parametrize(
    ("task", "metric", "floor"), [("tabular_wine", "macro_f1", 0.9), ("tabular_diabetes", "r2", 0.3)]
)
def test_other_heads_learn(task: str, metric: str, floor: float, tmp_path: Path) -> None:
    """Softmax + cross-entropy (wine) and a linear output + MSE (diabetes) from the same FFN code."""
    assert metrics_of(run_task(task, tmp_path))[metric] >= floor


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_onnx_matches_pytorch_on_any_batch(tabular_artifacts: Path, batch: int) -> None:
    info = json.loads((tabular_artifacts / "export.json").read_text())
    assert info["parity_max_abs_diff"] <= 1e-4 and info["inputs"][0]["shape"][0] not in (0, 1, 2)
    model, meta = load_trained(tabular_artifacts)
    x, _ = load_split(tabular_artifacts / "data", "test")
    x = np.resize(x, (batch, x.shape[1])).astype(np.float32)
    with torch.no_grad():
        expected = OutputHead(model, meta)(torch.as_tensor(x)).numpy()
    got = run_onnx(tabular_artifacts / "model.onnx", {"features": x})[0]
    assert got.shape == (batch, 2)
    assert np.max(np.abs(got - expected)) <= 1e-4


def test_champion_moves_only_when_better(tabular_artifacts: Path, tmp_path: Path) -> None:
    """The fixture registered version 1 as champion; a worse score must not take the alias, a better one must."""
    art = tabular_artifacts
    cfg = RegisterConfig(primary_metric="log_loss", greater_is_better=False, alias="test-champion")
    decisions = []
    for log_loss in (0.30, 0.50, 0.10):
        metrics = tmp_path / f"m{log_loss}.json"
        metrics.write_text(json.dumps({"log_loss": log_loss}))
        decisions.append(register(art / "data", art, art, metrics, tmp_path / "r.json", "tabular", cfg))
    assert [d["promoted"] for d in decisions] == [True, False, True]
    assert decisions[1]["champion_score_before"] == 0.30 and decisions[1]["champion_version"] == decisions[0]["version"]
    assert decisions[2]["champion_version"] == decisions[2]["version"]
