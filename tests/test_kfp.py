"""Kubeflow runner: the compiled spec is valid offline, and kfp.local reproduces the direct run's metrics."""

from __future__ import annotations

import copy
import json
import socket
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from components.config import stage_config
from pipelines.kfp_cli import pipeline_app

ROOT = Path(__file__).resolve().parents[1]


def _compile(params: dict, path: Path) -> dict:
    """Compile the tabular pipeline and parse document 0 strictly into a PipelineSpec (unknown field = error)."""
    from google.protobuf import json_format
    from kfp import compiler
    from kfp.pipeline_spec import pipeline_spec_pb2

    from pipelines.build import build_pipeline

    compiler.Compiler().compile(build_pipeline("tabular", params), str(path))
    doc = next(yaml.safe_load_all(path.read_text()))
    json_format.ParseDict(doc, pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)
    return doc


def test_compiled_spec_is_valid_and_shapes_the_train_task(params: dict, tmp_path: Path) -> None:
    from kfp.components import load_component_from_file

    gpu = copy.deepcopy(params)
    gpu["train"]["tabular"]["gpu"] = True
    for name, cfg in (("cpu", params), ("gpu", gpu)):
        doc = _compile(cfg, tmp_path / f"{name}.yaml")
        tasks = doc["root"]["dag"]["tasks"]
        train = doc["deploymentSpec"]["executors"]["exec-train"]["container"]
        assert set(tasks) == {"ingest", "prepare", "augment", "tune", "train", "evaluate", "export", "register"}
        assert tasks["train"]["retryPolicy"]["maxRetryCount"] == stage_config(params, "train", "tabular").retries
        assert tasks["register"]["cachingOptions"] == {}  # caching off
        assert (
            doc["root"]["inputDefinitions"]["parameters"]["prepare_config"]["defaultValue"]
            == (params["prepare"]["tabular"])
        )
        if name == "gpu":
            assert train["resources"]["accelerator"]["resourceCount"] == "1"
            assert train["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
        else:
            assert "resources" not in train
        assert load_component_from_file(str(tmp_path / f"{name}.yaml")).name == "dlpipe-tabular"


def test_tuning_workers_fan_out_with_parallel_for(params: dict, tmp_path: Path) -> None:
    fan = copy.deepcopy(params)
    fan["tune"]["tabular"]["workers"] = 3
    fan["train"]["tabular"]["gpu"] = True
    doc = _compile(fan, tmp_path / "fan.yaml")
    tasks = doc["root"]["dag"]["tasks"]
    assert {"tune-setup", "tune-finalize"} <= set(tasks) and "tune" not in tasks
    loop = next(t for name, t in tasks.items() if name.startswith("for-loop"))
    assert loop["parameterIterator"]["items"]["raw"] == "[0, 1, 2]"
    worker = doc["deploymentSpec"]["executors"]["exec-tune-worker"]["container"]
    assert worker["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert "tune-setup" in tasks["tune-finalize"]["dependentTasks"]


def test_local_pipeline_matches_direct_run(
    tabular_artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same functions, same config -> same numbers; the run registers `tabular@champion` in its own MLflow."""
    from mlflow import MlflowClient

    direct = json.loads((tabular_artifacts.parents[1] / "metrics" / "tabular.json").read_text())
    home = tmp_path / "home"
    uri = f"sqlite:///{home / 'mlflow.db'}"
    monkeypatch.setenv("DLPIPE_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # mlflow.set_registry_uri() (run by the fixture in this process) exports MLFLOW_REGISTRY_URI, and the
    # step subprocesses would inherit it: registering into the session's registry, not this test's.
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # kfp.local's subprocesses run here, with this folder first on sys.path

    result = CliRunner().invoke(
        pipeline_app, ["run", "--local", "--task", "tabular", "--params", str(ROOT / "params.yaml")]
    )
    assert result.exit_code == 0, result.output[-3000:]
    (run_dir,) = home.glob("local_outputs/dlpipe-tabular-*")
    local = json.loads((run_dir / "evaluate/metrics/tabular.json").read_text())
    assert local.keys() == direct.keys()
    assert local == pytest.approx(direct, abs=1e-6)
    trained = json.loads((run_dir / "train/model/train.json").read_text())
    expected = json.loads((tabular_artifacts / "train.json").read_text())
    assert (trained["best_epoch"], trained["epochs_run"]) == (expected["best_epoch"], expected["epochs_run"])
    assert trained["best_score"] == pytest.approx(expected["best_score"], abs=1e-6)
    assert MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias("tabular", "champion")


def test_submit_to_unreachable_host_fails_in_one_line() -> None:
    with socket.socket() as sock:  # bind then close: a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = CliRunner().invoke(
        pipeline_app, ["submit", "--host", f"http://127.0.0.1:{port}", "--params", str(ROOT / "params.yaml")]
    )
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach Kubeflow Pipelines"), result.output


def test_cnn_pipeline_runs_locally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, params: dict) -> None:
    """ingest -> prepare -> augment -> train -> evaluate -> export -> register for the digits CNN, briefly trained."""
    quick = copy.deepcopy(params)
    quick["train"]["digits"] |= {"epochs": 2}
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(quick))
    home = tmp_path / "home"
    monkeypatch.setenv("DLPIPE_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(pipeline_app, ["run", "--local", "--task", "digits", "--params", str(params_file)])
    assert result.exit_code == 0, result.output[-3000:]
    (run_dir,) = home.glob("local_outputs/dlpipe-digits-*")
    assert (run_dir / "augment/policy/augment.json").is_file() and (run_dir / "augment/policy/preview.png").is_file()
    metrics = json.loads((run_dir / "evaluate/metrics/digits.json").read_text())
    assert metrics["accuracy"] > 0.5 and "accuracy/7" in metrics
    assert (run_dir / "evaluate/plots/worst_misclassified.png").is_file()
