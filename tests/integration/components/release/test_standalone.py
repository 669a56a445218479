"""The registered model stands alone: raw rows in, one answer per row out, through MLflow's own tools, equal to
what the serving code answers; `dlpipe predict` scores a CSV from the registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.core.contract import load_meta
from pipelines.cli import main

MODEL = "models:/tabular@champion"


@pytest.fixture(scope="module")
def raw_rows(tabular_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, Path]:
    """Twelve raw test rows (the split un-scaled, columns shuffled and one extra id column) as a CSV."""
    meta = load_meta(tabular_artifacts / "data")
    with np.load(tabular_artifacts / "data" / "test.npz") as data:
        x = data["x"][:12]
    raw = x * np.asarray(meta.scaler["scale"]) + np.asarray(meta.scaler["mean"])
    frame = pd.DataFrame(raw, columns=meta.feature_names).iloc[:, ::-1]
    frame.insert(0, "patient", [f"p{i}" for i in range(len(frame))])
    path = tmp_path_factory.mktemp("rows") / "rows.csv"
    frame.to_csv(path, index=False)
    return path, frame, tabular_artifacts


def _expected(art: Path, frame: pd.DataFrame) -> np.ndarray:
    """The probabilities PyTorch gives on the scaled rows (the checkpoint, not the ONNX graph)."""
    import torch

    from components.train.checkpoint import load_trained
    from components.train.objectives import OutputHead

    model, meta = load_trained(art)
    scaled = (frame[meta.feature_names].to_numpy() - meta.scaler["mean"]) / meta.scaler["scale"]
    with torch.no_grad():
        return OutputHead(model, meta).eval()(torch.as_tensor(scaled, dtype=torch.float32)).numpy()


def test_pyfunc_answers_one_row_per_input_row_with_class_names(raw_rows) -> None:
    import mlflow

    _, frame, art = raw_rows
    meta = load_meta(art / "data")
    model = mlflow.pyfunc.load_model(MODEL)
    answers = model.predict(frame)
    assert len(answers) == len(frame)
    expected = _expected(art, frame)
    got = answers[[f"probability.{c}" for c in meta.classes]].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert list(answers["label"]) == [meta.classes[k] for k in expected.argmax(axis=1)]
    # the MLflow model says what it takes and gives
    assert model.metadata.get_input_schema().input_names() == meta.feature_names
    assert model.metadata.metadata["classes"] == meta.classes
    with pytest.raises(Exception, match="mean radius"):
        model.predict(frame.drop(columns=["mean radius"]))


def test_registered_model_carries_a_model_card(tabular_artifacts: Path) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    description = client.get_registered_model("tabular").description
    for part in ("breast_cancer", "Test metrics", "roc_auc", "Intended use", "Limits"):
        assert part in description
    version = client.get_model_version_by_alias("tabular", "champion")
    assert version.description == description or "Test metrics" in version.description


def test_mlflow_models_predict_csv_matches_and_prints_no_gpu_errors(raw_rows, tmp_path: Path) -> None:
    path, frame, art = raw_rows
    out = tmp_path / "predictions.json"
    cli = [sys.executable, "-m", "mlflow", "models", "predict", "-m", MODEL, "-i", str(path), "-t", "csv"]
    proc = subprocess.run(
        [*cli, "--env-manager", "local", "-o", str(out)], capture_output=True, text=True, env=os.environ, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "CUDA" not in proc.stderr and "Error" not in proc.stderr
    answers = json.loads(out.read_text())["predictions"]
    assert len(answers) == len(frame)
    meta = load_meta(art / "data")
    got = np.array([[a[f"probability.{c}"] for c in meta.classes] for a in answers])
    np.testing.assert_allclose(got, _expected(art, frame), atol=1e-5)


def test_dlpipe_predict_scores_a_csv_from_the_registry(raw_rows, tmp_path: Path, monkeypatch) -> None:
    path, frame, art = raw_rows
    out = tmp_path / "out.csv"
    with pytest.raises(SystemExit) as done:
        monkeypatch.setattr(sys, "argv", ["dlpipe", "predict", "tabular", "-i", str(path), "-o", str(out)])
        main()
    assert done.value.code in (0, None)
    answers = pd.read_csv(out)
    assert list(answers["patient"]) == list(frame["patient"])  # the input's columns come first, rows in order
    meta = load_meta(art / "data")
    got = answers[[f"probability.{c}" for c in meta.classes]].to_numpy()
    np.testing.assert_allclose(got, _expected(art, frame), atol=1e-5)


def test_dlpipe_predict_refuses_a_bad_row_and_writes_nothing(raw_rows, tmp_path: Path, capsys, monkeypatch) -> None:
    path, frame, _ = raw_rows
    bad = frame.astype({"mean area": object})
    bad.loc[3, "mean area"] = "lots"
    source, out = tmp_path / "bad.csv", tmp_path / "out.csv"
    bad.to_csv(source, index=False)
    with pytest.raises(SystemExit) as done:
        monkeypatch.setattr(sys, "argv", ["dlpipe", "predict", "tabular", "-i", str(source), "-o", str(out)])
        main()
    assert done.value.code == 2
    assert "row 4" in capsys.readouterr().err and not out.exists()
