"""The registered model stands alone: raw rows in (feature values, 0..255 pixel columns, texts), one answer per row
out, through MLflow's own tools, equal to what the serving code answers; `dlpipe predict` scores a CSV from the
registry."""

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
from components.data.splits import load_split
from components.data.text.tokenization import decode, load_tokenizer
from components.release.pyfunc_onnx import pixel_columns
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
    # the version this session's tabular run registered (other tests register more versions of "tabular" later)
    registered = json.loads((tabular_artifacts / "registration.json").read_text())["version"]
    description = client.get_model_version("tabular", registered).description
    for part in ("breast_cancer", "Test metrics", "roc_auc", "Intended use", "Limits"):
        assert part in description
    latest = client.get_registered_model("tabular").description  # the card of the latest registration
    assert "Test metrics" in latest and "Intended use" in latest


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


# --- image and text tasks: the answers of the serving family (what the HTTP service runs) for the same input ---


@pytest.fixture(scope="module")
def digit_rows(digits_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """Twelve test digits as a CSV a user would hold: an id column, then integer pixel columns pixel0..pixel63."""
    meta = load_meta(digits_artifacts / "data")
    x, _ = load_split(digits_artifacts / "data", "test")
    pre = meta.preprocessing
    pixels = (x[:12] * pre["std"][0] + pre["mean"][0]) * 255.0
    frame = pd.DataFrame(
        np.clip(pixels.reshape(12, -1), 0, 255).round().astype(int), columns=pixel_columns(meta.model_dump())
    )
    frame.insert(0, "image", [f"d{i}" for i in range(len(frame))])
    path = tmp_path_factory.mktemp("digits-rows") / "digits.csv"
    frame.to_csv(path, index=False)
    return path, frame


@pytest.fixture(scope="module")
def text_rows(sentiment_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """Texts as a CSV: eight test texts (their ids decoded), one too long for the model (truncated), one with
    characters the tokenizer never saw."""
    tok = load_tokenizer(sentiment_artifacts / "data")
    x, _ = load_split(sentiment_artifacts / "data", "test")
    texts = [decode(tok, ids) for ids in x[:8]]
    texts += [" ".join(["a truly wonderful, moving film"] * 40), "ça, c'est un film 🎬 \u4e2d"]
    frame = pd.DataFrame({"review": range(len(texts)), "text": texts})
    path = tmp_path_factory.mktemp("text-rows") / "texts.csv"
    frame.to_csv(path, index=False)
    return path, frame


def _family_answers(task: str, frame: pd.DataFrame) -> pd.DataFrame:
    """What the task's serving family answers for these rows, from the registered champion: class probabilities
    (and for texts the tokens read and whether the end was cut), one row per input row."""
    from serving.bundle import load_bundle

    bundle = load_bundle(task)
    classes = bundle.meta.classes
    if bundle.meta.kind == "image":
        from serving.families.image import ImageTask

        family = ImageTask(bundle)
        family.load()
        pre = bundle.meta.preprocessing
        pixels = frame[pixel_columns(bundle.meta.model_dump())].to_numpy(np.float32)
        scores = family.infer(pixels.reshape(len(frame), pre["channels"], *pre["resize"]))
        return pd.DataFrame(scores, columns=[f"probability.{c}" for c in classes])
    from serving.families.text import TextTask

    family = TextTask(bundle)
    family.load()
    answers = family.classify(list(frame["text"]))
    rows = [{f"probability.{c}": a.probabilities[c] for c in classes} for a in answers]
    return pd.DataFrame(rows).assign(
        label=[a.label for a in answers], tokens=[a.tokens for a in answers], truncated=[a.truncated for a in answers]
    )


def _classes(answers: pd.DataFrame) -> list[str]:
    return [c.removeprefix("probability.") for c in answers.columns if c.startswith("probability.")]


def _assert_same_answers(got: pd.DataFrame, expected: pd.DataFrame, classes: list[str]) -> None:
    assert len(got) == len(expected)
    columns = [f"probability.{c}" for c in classes]
    np.testing.assert_allclose(got[columns].to_numpy(np.float64), expected[columns].to_numpy(np.float64), atol=1e-5)
    assert list(got["label"]) == [classes[k] for k in expected[columns].to_numpy().argmax(axis=1)]
    for extra in ("tokens", "truncated"):  # text answers: as `POST /classify` says them
        if extra in expected:
            assert list(got[extra]) == list(expected[extra])


def test_pyfunc_scores_pixel_rows_as_the_image_service(digit_rows) -> None:
    import mlflow

    _, frame = digit_rows
    model = mlflow.pyfunc.load_model("models:/digits@champion")
    classes = model.metadata.metadata["classes"]
    _assert_same_answers(model.predict(frame), _family_answers("digits", frame), classes)
    assert model.metadata.get_input_schema().input_names() == [f"pixel{i}" for i in range(64)]
    assert model.metadata.load_input_example() is not None
    bad = frame.copy()
    bad.loc[4, "pixel9"] = 300
    with pytest.raises(Exception, match=r"0\.\.255.*\[5\]"):
        model.predict(bad)


def test_pyfunc_scores_texts_as_the_text_service(text_rows) -> None:
    import mlflow

    _, frame = text_rows
    model = mlflow.pyfunc.load_model("models:/sentiment@champion")
    answers = model.predict(frame)
    _assert_same_answers(answers, _family_answers("sentiment", frame), model.metadata.metadata["classes"])
    assert answers["truncated"].tolist().count(True) == 1  # the long text, cut as the service cuts it
    assert model.metadata.get_input_schema().input_names() == ["text"]
    assert "text" in model.metadata.load_input_example()
    with pytest.raises(Exception, match=r"empty.*\[2\]"):
        model.predict(frame.assign(text=["a fine film", "   ", *frame["text"][2:]]))


def _mlflow_models_predict(uri: str, rows: Path, out: Path) -> list[dict]:
    """`mlflow models predict` in a fresh process, as a user runs it; its answers, after checking that it printed
    no GPU or other errors."""
    cli = [sys.executable, "-m", "mlflow", "models", "predict", "-m", uri, "-i", str(rows), "-t", "csv"]
    proc = subprocess.run(
        [*cli, "--env-manager", "local", "-o", str(out)], capture_output=True, text=True, env=os.environ, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "CUDA" not in proc.stderr and "Error" not in proc.stderr
    return json.loads(out.read_text())["predictions"]


@pytest.mark.parametrize("task", ["digits", "sentiment"])
def test_mlflow_models_predict_scores_pixel_and_text_csvs_as_the_service(
    task: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    path, frame = request.getfixturevalue({"digits": "digit_rows", "sentiment": "text_rows"}[task])
    answers = pd.DataFrame(_mlflow_models_predict(f"models:/{task}@champion", path, tmp_path / "out.json"))
    expected = _family_answers(task, frame)
    _assert_same_answers(answers, expected, _classes(expected))


@pytest.mark.parametrize("task", ["digits", "sentiment"])
def test_dlpipe_predict_scores_pixel_and_text_csvs_as_the_service(
    task: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch
) -> None:
    path, frame = request.getfixturevalue({"digits": "digit_rows", "sentiment": "text_rows"}[task])
    out = tmp_path / "out.csv"
    with pytest.raises(SystemExit) as done:
        monkeypatch.setattr(sys, "argv", ["dlpipe", "predict", task, "-i", str(path), "-o", str(out), "--no-progress"])
        main()
    assert done.value.code in (0, None)
    answers = pd.read_csv(out, dtype={"label": str})
    key = frame.columns[0]  # the id column comes first, rows in order
    assert answers.columns[0] == key and list(answers[key]) == list(frame[key])
    expected = _family_answers(task, frame)
    _assert_same_answers(answers, expected, _classes(expected))


def test_dlpipe_predict_refuses_an_empty_text_and_writes_nothing(
    text_rows, tmp_path: Path, capsys, monkeypatch
) -> None:
    _, frame = text_rows
    source, out = tmp_path / "bad.csv", tmp_path / "out.csv"
    frame.assign(text=[*frame["text"][:5], "", *frame["text"][6:]]).to_csv(source, index=False)
    with pytest.raises(SystemExit) as done:
        monkeypatch.setattr(sys, "argv", ["dlpipe", "predict", "sentiment", "-i", str(source), "-o", str(out)])
        main()
    assert done.value.code == 2
    assert "row 6" in capsys.readouterr().err and not out.exists()
