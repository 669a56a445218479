"""The forecast and sentiment tasks end to end: chronological windows, metrics against the baseline, the
negation behaviour test, ONNX with dynamic lengths, and the /forecast and /classify services."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from serving import cli, families
from serving.bundle import load_bundle
from tests.helpers.serving import bentoml_server

pytestmark = pytest.mark.slow  # about 55 s: two trained tasks, their servers, two kfp.local runs

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("task", ["forecast", "forecast_elnino"])  # CO2, and El Nino brought in as a CSV series
def test_forecast_task_metrics_plot_and_export(task: str, request: pytest.FixtureRequest, params: dict) -> None:
    artifacts: Path = request.getfixturevalue(f"{task}_artifacts")
    root, horizon = artifacts.parents[1], params["prepare"][task]["series"]["horizon"]
    metrics = json.loads((root / "metrics" / f"{task}.json").read_text())
    assert {"mae", "rmse", "mape", "naive_mape", "naive_mae", "holt_winters_mape", "holt_winters_mae"} <= metrics.keys()
    assert metrics["mape_ratio_to_naive"] == pytest.approx(metrics["mape"] / metrics["naive_mape"], rel=1e-4)
    assert metrics["mape_ratio_to_holt_winters"] == pytest.approx(
        metrics["mape"] / metrics["holt_winters_mape"], rel=1e-4
    )
    assert (root / "plots" / task / "forecast.png").is_file()
    info = json.loads((artifacts / "export.json").read_text())
    assert info["inputs"][0]["shape"] == ["batch", "sequence", 1] and info["outputs"][0]["shape"] == ["batch", horizon]
    assert len(info["parity_lengths"]) == 2 and info["example_length"] not in info["parity_lengths"]
    assert info["parity_max_abs_diff"] <= 1e-4
    assert families.family_of(load_bundle(task, model_dir=artifacts)).name == "forecast"


def test_sentiment_task_metrics_behaviour_and_export(sentiment_artifacts: Path) -> None:
    root = sentiment_artifacts.parents[1]
    metrics = json.loads((root / "metrics" / "sentiment.json").read_text())
    assert {"accuracy", "f1", "negation_flip_rate", "negation_mean_shift"} <= metrics.keys()
    assert metrics["accuracy"] > 0.55  # one short epoch on 2,000 texts: better than chance
    assert (root / "plots" / "sentiment" / "confusion_matrix.png").is_file()
    info = json.loads((sentiment_artifacts / "export.json").read_text())
    assert info["inputs"][0] == {"name": "tokens", "shape": ["batch", "sequence"], "elem_type": "INT64"}
    assert info["outputs"][0]["shape"] == ["batch", 2] and info["parity_max_abs_diff"] <= 1e-4


def test_sequence_tasks_get_their_families(
    monkeypatch: pytest.MonkeyPatch, forecast_artifacts: Path, sentiment_artifacts: Path
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(cli.os, "execve", lambda exe, argv, env: calls.append(argv))
    cli.serve(task="forecast")
    cli.serve(task="sentiment")
    assert [c[4] for c in calls] == ["serving.app:Service", "serving.app:Service"]
    assert [cli._check(task, None, None) for task in ("forecast", "sentiment")] == ["forecast", "text"]
    exported = {"forecast": forecast_artifacts, "sentiment": sentiment_artifacts}
    chosen = {t: families.family_of(load_bundle(t, model_dir=art)).name for t, art in exported.items()}
    assert chosen == {"forecast": "forecast", "sentiment": "text"}  # series; text without encoder graphs


@pytest.fixture(scope="module")
def forecast_server(forecast_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with bentoml_server("serving.app:Service", "forecast", tmp_path_factory.mktemp("serve-fc")) as url:
        yield url


@pytest.fixture(scope="module")
def text_server(sentiment_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with bentoml_server("serving.app:Service", "sentiment", tmp_path_factory.mktemp("serve-txt")) as url:
        yield url


def test_forecast_endpoint(forecast_server: str, forecast_artifacts: Path) -> None:
    from components.data.series import read_series
    from components.release.export import run_onnx

    meta = load_bundle("forecast", model_dir=forecast_artifacts).meta
    window = meta.series["window"]
    values = read_series(forecast_artifacts / "data")["values"]
    histories = [values[:500].tolist(), values[100 : 100 + window].tolist()]
    scaled = [(np.array(h[-window:]) - meta.scaler["mean"][0]) / meta.scaler["scale"][0] for h in histories]
    expected = run_onnx(forecast_artifacts / "model.onnx", {"history": np.float32(scaled)[..., None]})[0]
    with httpx.Client(base_url=forecast_server, timeout=30) as http:
        answer = http.post("/forecast", json={"series": [{"history": h} for h in histories]})
        assert answer.status_code == 200, answer.text
        got = answer.json()
        assert [len(a["forecast"]) for a in got] == [8, 8] and got[0]["history_used"] == window
        np.testing.assert_allclose([a["forecast"] for a in got], expected, rtol=1e-5)
        short = http.post("/forecast", json={"series": [{"history": [1.0, 2.0]}]})
        assert short.status_code == 400 and f"at least {window}" in short.text
        nan = http.post(
            "/forecast", content='{"series": [{"history": [NaN' + ", 1" * window + "]}]}",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        assert nan.status_code == 400 and "finite" in nan.text
        text = http.post("/forecast", json={"series": [{"history": ["a"] * window}]})
        assert text.status_code == 400
        assert (
            http.post("/forecast", content=b"\xff\xfe", headers={"Content-Type": "application/json"}).status_code == 400
        )
        assert http.post("/forecast", content=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
        assert http.get("/info").json()["min_history"] == window


def test_classify_endpoint(text_server: str, sentiment_artifacts: Path) -> None:
    from components.data.text.tokenization import encode, load_tokenizer
    from components.release.export import run_onnx

    meta = load_bundle("sentiment", model_dir=sentiment_artifacts).meta
    texts = ["a wonderful, moving film", "dull and pointless", "not good"]
    tok = load_tokenizer(sentiment_artifacts / "data")
    ids = encode(tok, texts, meta.tokenizer["max_length"], pad="longest").ids
    expected = run_onnx(sentiment_artifacts / "model.onnx", {"tokens": ids})[0]
    with httpx.Client(base_url=text_server, timeout=30) as http:
        answer = http.post("/classify", json={"texts": texts})
        assert answer.status_code == 200, answer.text
        got = answer.json()
        assert [a["label"] for a in got] == [meta.classes[k] for k in expected.argmax(1)]
        np.testing.assert_allclose([a["probability"] for a in got], expected.max(1), atol=1e-5)
        long = http.post("/classify", json={"texts": ["good " * 500]}).json()[0]
        assert long["truncated"] and long["tokens"] == meta.tokenizer["max_length"]
        empty = http.post("/classify", json={"texts": ["ok", "   "]})
        assert empty.status_code == 400 and "empty text" in empty.text
        huge = http.post("/classify", json={"texts": ["x" * (meta.tokenizer["max_chars"] + 1)]})
        assert huge.status_code == 400 and "over the limit" in huge.text
        bad = http.post("/classify", content=b'{"texts": ["caf\xe9"]}', headers={"Content-Type": "application/json"})
        assert bad.status_code == 400 and "not valid UTF-8" in bad.text
        assert http.post("/classify", json={"texts": []}).status_code == 400
        assert http.post("/classify", json={"texts": [5]}).status_code == 400


@pytest.mark.parametrize("task", ["forecast", "sentiment"])
def test_sequence_pipelines_run_locally(
    task: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, params: dict
) -> None:
    from pipelines.cli.pipeline import pipeline_app

    quick = copy.deepcopy(params)
    quick["train"][task] |= {"epochs": 1}
    if task == "sentiment":
        quick["prepare"][task] |= {"train_limit": 500}
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(quick))
    home = tmp_path / "home"
    monkeypatch.setenv("DLPIPE_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(pipeline_app, ["run", "--local", "--task", task, "--params", str(params_file)])
    assert result.exit_code == 0, result.output[-3000:]
    (run_dir,) = home.glob(f"local_outputs/dlpipe-{task}-*")
    metrics = json.loads((run_dir / f"evaluate/metrics/{task}.json").read_text())
    assert ("mape" if task == "forecast" else "accuracy") in metrics
    exported = json.loads((run_dir / "export/onnx/export.json").read_text())
    assert exported["inputs"][0]["shape"][:2] == ["batch", "sequence"]
