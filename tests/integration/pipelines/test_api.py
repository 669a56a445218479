"""The Python API (pipelines/api.py) through the example script a notebook user starts from."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[3]


def test_quickstart_example_trains_and_registers_a_model_that_learns(tmp_path: Path, monkeypatch) -> None:
    from components.core import tracking

    monkeypatch.setattr(sys, "argv", ["quickstart.py", "--root", str(tmp_path), "--epochs", "4"])
    # its own registry: `tabular` in the session's is the tabular_artifacts fixture's champion, which other tests
    # serve, whichever test runs first
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    try:
        runpy.run_path(str(ROOT / "examples" / "quickstart.py"), run_name="__main__")
    finally:
        monkeypatch.undo()
        tracking.configure()  # mlflow's process-wide URI back at the session's store

    art = tmp_path / "artifacts" / "tabular"
    metrics = json.loads((tmp_path / "metrics" / "tabular.json").read_text())
    assert metrics["roc_auc"] > 0.9  # breast cancer: a model that learned, not a coin
    registration = json.loads((art / "registration.json").read_text())
    assert registration["registered"] and registration["model"] == "tabular"
    assert (art / "model.onnx").is_file()
    # the example's keyword overrides reached the trained model: model__hidden=[32], epochs=4
    checkpoint = torch.load(art / "checkpoint.pt", weights_only=True)
    assert checkpoint["model_config"]["hidden"] == [32]
    assert json.loads((art / "train.json").read_text())["epochs_run"] <= 4
