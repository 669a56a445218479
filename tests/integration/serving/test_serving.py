"""Serving: the meta.json-driven helpers without a server, then a real `bentoml serve` subprocess that loads
`models:/tabular@champion` from the test registry and is checked against onnxruntime run directly."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from components.core.contract import load_meta
from components.core.errors import DataError
from serving import cli, session
from serving.bundle import load_bundle
from tests.helpers.serving import ROOT, _free_port, _masked_lm_export, _stop, bentoml_server


def test_local_bundle_session_and_task_check(tabular_artifacts: Path) -> None:
    bundle = load_bundle("tabular", model_dir=tabular_artifacts)
    assert bundle.source == str(tabular_artifacts) and bundle.meta.task == "tabular"
    opened = session.make_session(bundle)
    assert opened.get_providers()[0] == session.choose_providers()[0]
    assert opened.get_session_options().intra_op_num_threads == session.ort_threads()
    for broken in (bundle.onnx[: len(bundle.onnx) // 2], b""):  # an export copied half-way, an empty file
        with pytest.raises(DataError, match=f"{tabular_artifacts}: model.onnx is not a loadable ONNX model"):
            session.make_session(dataclasses.replace(bundle, onnx=broken))
    with pytest.raises(ValueError, match="holds task 'tabular', not 'tabular_wine'"):
        load_bundle("tabular_wine", model_dir=tabular_artifacts)


def test_a_corrupt_model_stops_the_server_at_start(tabular_artifacts: Path, tmp_path: Path) -> None:
    """A model.onnx cut short: `bentoml serve` exits at start with the error naming it, instead of running on while
    its HTTP workers fail to open the graph and are restarted every 10 s."""
    folder = tmp_path / "tabular"
    shutil.copytree(tabular_artifacts, folder)
    graph = folder / "model.onnx"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    env = {k: v for k, v in os.environ.items() if k != "DLPIPE_MODEL_URI"} | {
        "DLPIPE_TASK": "tabular", "DLPIPE_MODEL_DIR": str(folder), "BENTOML_HOME": str(tmp_path / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
    }  # fmt: skip
    cmd = [sys.executable, "-m", "bentoml", "serve", cli.SERVICE, "--host", "127.0.0.1", "--port", str(_free_port())]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        _stop(proc)
    assert proc.returncode != 0
    assert f"{folder}: model.onnx is not a loadable ONNX model, cut short or corrupt" in out


def test_cli_execs_bentoml_with_absolute_paths(
    monkeypatch: pytest.MonkeyPatch, tabular_artifacts: Path, tmp_path: Path
) -> None:
    calls: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr(cli.os, "execve", lambda exe, argv, env: calls.append((exe, argv, env)))
    monkeypatch.setenv("DLPIPE_MODEL_URI", "models:/stale@champion")
    cli.serve(task="tabular", model_dir=os.path.relpath(tabular_artifacts))
    _, argv, env = calls[0]
    assert argv[1:5] == ["-m", "bentoml", "serve", "serving.app:Service"]
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and argv[argv.index("--port") + 1] == "3000"
    assert env["DLPIPE_TASK"] == "tabular" and "DLPIPE_MODEL_URI" not in env
    assert env["DLPIPE_MODEL_DIR"] == str(tabular_artifacts.resolve())
    with pytest.raises(cli.typer.BadParameter, match="no service for task 'cnn': models:/cnn@champion is not in"):
        cli.serve(task="cnn")
    with pytest.raises(cli.typer.BadParameter, match="holds task 'tabular', not 'tabular_wine'"):
        cli.serve(task="tabular_wine", model_dir=str(tabular_artifacts))
    pretraining = _masked_lm_export(tmp_path / "pretrain", "pretrain")  # the kind decides, whatever the name
    with pytest.raises(cli.typer.BadParameter, match="no service for task 'pretrain': nothing to serve.*masked-LM"):
        cli.serve(task="pretrain", model_dir=str(pretraining))
    assert len(calls) == 1
    cli.serve(task="all")
    assert calls[-1][1][4] == "serving.gateway:Gateway" and calls[-1][2]["DLPIPE_TASK"] == "all"


# What an HTTP worker of `bentoml serve` does at start-up (worker_index set, then the service module loads its
# bundles): print what it loaded and whether it imported MLflow. LOAD is the service's own load.
WORKER = """
import hashlib, json, sys
import bentoml
bentoml.server_context.worker_index = 1
LOAD
print(json.dumps([b.source, hashlib.sha256(b.onnx).hexdigest(), b.version, "mlflow" in sys.modules]))
"""
LOADS = {
    "serving.app": "from serving.bundle import bundle_from_env; b = bundle_from_env()",
    "serving.gateway": "from serving.gateway import bundles; b, = bundles()",
}

# The server's own process: load, delete the models loaded from, then start a worker (and a worker's worker, whose
# parent handed nothing down): their answers, and where the handed-down copies were.
SERVER = """
import json, os, shutil, subprocess, sys
from serving.bundle import HANDED_DOWN
exec(sys.argv[2])
shutil.rmtree(os.environ["DLPIPE_MODEL_DIR"])
run = lambda *args: subprocess.run([sys.executable, "-c", *args], capture_output=True, text=True)
worker = run(sys.argv[1])
nested = run("import subprocess, sys; subprocess.run([sys.executable, '-c', sys.argv[1]], check=True)", sys.argv[1])
print(json.dumps([worker.stdout, worker.stderr[-2000:], nested.stderr, json.loads(os.environ[HANDED_DOWN])["dir"]]))
"""


@pytest.mark.parametrize("service", LOADS)
def test_workers_serve_the_bundles_their_server_loaded(service: str, tabular_artifacts: Path, tmp_path: Path) -> None:
    """The server process hands what it loaded down to the HTTP workers it starts: they serve that very model,
    without MLflow, even when its source is gone by then; a process it did not start is handed nothing; the copy
    is removed when the server exits. For one task's service (a model folder) and the gateway (an artifacts folder)."""
    import hashlib

    source = tmp_path / "artifacts"
    model = shutil.copytree(tabular_artifacts, source / "tabular")
    env = os.environ | {"DLPIPE_TASK": "tabular", "DLPIPE_TASKS": "tabular"}
    env |= {"DLPIPE_MODEL_DIR": str(model if service == "serving.app" else source)}
    env.pop("DLPIPE_MODEL_URI", None)
    expected = (str(model), hashlib.sha256((model / "model.onnx").read_bytes()).hexdigest())
    expected += (json.loads((model / "registration.json").read_text())["version"], False)
    load = LOADS[service]
    proc = subprocess.run(
        [sys.executable, "-c", SERVER, WORKER.replace("LOAD", load), load],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    worker_out, worker_err, nested_err, handed = json.loads(proc.stdout.splitlines()[-1])
    assert worker_out, worker_err
    assert tuple(json.loads(worker_out)) == expected
    # not handed its grandparent's bundles: it looked for the deleted model itself
    assert (str(model) if service == "serving.app" else "no servable model for ['tabular']") in nested_err
    assert not Path(handed).exists()


@pytest.fixture(scope="module")
def server(tabular_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`bentoml serve` on the registry's champion (same MLFLOW_TRACKING_URI as the fixture), until teardown."""
    with bentoml_server("serving.app:Service", "tabular", tmp_path_factory.mktemp("serve"), per_core=True) as url:
        yield url


@pytest.fixture(scope="module")
def test_rows(tabular_artifacts: Path) -> tuple[dict[str, Any], np.ndarray, np.ndarray, list[dict[str, float]]]:
    """meta, scaled test features, labels, and the same rows as raw named records (x * scale + mean)."""
    meta = load_meta(tabular_artifacts / "data")
    with np.load(tabular_artifacts / "data" / "test.npz") as data:
        x, y = data["x"], data["y"]
    raw = x * np.asarray(meta.scaler["scale"]) + np.asarray(meta.scaler["mean"])
    return meta, x, y, [dict(zip(meta.feature_names, row.tolist(), strict=True)) for row in raw]


def test_predictions_match_onnxruntime_on_raw_features(server: str, tabular_artifacts: Path, test_rows) -> None:
    import bentoml
    import onnxruntime as ort

    meta, x, y, records = test_rows
    raw = np.array([list(r.values()) for r in records], dtype=np.float32)  # the graph scales them itself
    session = ort.InferenceSession(str(tabular_artifacts / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(None, {meta.input.name: raw})[0]
    with bentoml.SyncHTTPClient(server) as client:
        answers = client.predict(records=records)
    got = np.array([[a["probabilities"][c] for c in meta.classes] for a in answers])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    labels = [a["label"] for a in answers]
    assert labels == [meta.classes[k] for k in expected.argmax(axis=1)]
    assert all(a["probability"] == a["probabilities"][a["label"]] for a in answers)
    assert np.mean(np.array(labels) == np.array(meta.classes)[y]) >= 0.9


def test_concurrent_single_rows_are_batched_and_answered_in_order(server: str, test_rows) -> None:
    meta, x, y, records = test_rows
    with httpx.Client(base_url=server, timeout=10) as http:

        def one(i: int) -> float:
            response = http.post("/predict", json={"records": [records[i]]})
            assert response.status_code == 200, response.text
            return response.json()[0]["probabilities"][meta.classes[1]]

        with ThreadPoolExecutor(8) as pool:
            concurrent = list(pool.map(one, range(len(records))))
        together = http.post("/predict", json={"records": records}).json()
        assert concurrent == pytest.approx([a["probabilities"][meta.classes[1]] for a in together], abs=1e-6)
        assert 'bentoml_service_adaptive_batch_size_count{method_name="predict"' in http.get("/metrics").text


def _bad_request(case: str, good: dict[str, float]) -> tuple[dict[str, Any], int, str]:
    """httpx.post kwargs for one kind of bad input, the status it must get, and text the error must hold."""
    as_json = {"content-type": "application/json"}

    def body(**change: Any) -> dict[str, Any]:  # json.dumps writes NaN/Infinity, as some clients do
        return {"content": json.dumps({"records": [{**good, **change}]}), "headers": as_json}

    return {
        "missing feature": (
            {"json": {"records": [{k: v for k, v in good.items() if k != "mean radius"}]}},
            400,
            "mean radius",
        ),
        "unknown feature": ({"json": {"records": [{**good, "colour": 1}]}}, 400, "colour"),
        "non-numeric": ({"json": {"records": [{**good, "mean area": "big"}]}}, 400, "mean area"),
        "NaN": (body(**{"mean area": float("nan")}), 400, "finite_number"),
        "Infinity": (body(**{"mean area": float("-inf")}), 400, "finite_number"),
        "float32 overflow": ({"json": {"records": [{**good, "mean area": 1e300}]}}, 400, "float32 overflow"),
        "empty list": ({"json": {"records": []}}, 400, "at least 1 item"),
        "too many rows": ({"json": {"records": [good] * 1001}}, 400, "at most 1000 items"),
        "no records key": ({"json": [good]}, 400, "Input should be an object"),
        "broken JSON": ({"content": b'{"records": [', "headers": as_json}, 400, "json_invalid"),
        "wrong content type": ({**body(), "headers": {"content-type": "text/plain"}}, 415, "text/plain"),
        "form post": ({"data": {"records": "1"}}, 415, "application/x-www-form-urlencoded"),
    }[case]


BAD_CASES = [
    "missing feature",
    "unknown feature",
    "non-numeric",
    "NaN",
    "Infinity",
    "float32 overflow",
    "empty list",
    "too many rows",
    "no records key",
    "broken JSON",
    "wrong content type",
    "form post",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_gets_4xx_json_naming_the_problem(case: str, server: str, test_rows) -> None:
    kwargs, status, needle = _bad_request(case, test_rows[3][0])
    response = httpx.post(f"{server}/predict", timeout=10, **kwargs)
    assert (response.status_code, response.headers["content-type"]) == (status, "application/json")
    assert needle in response.text, response.text[:300]


def test_info_health_metrics_and_docs(server: str, test_rows) -> None:
    meta = test_rows[0]
    info = httpx.get(f"{server}/info").json()
    assert info["source"] == "models:/tabular@champion" and info["classes"] == meta.classes
    assert info["feature_names"] == meta.feature_names and info["max_rows"] == 1000
    for path in ("/livez", "/readyz", "/metrics", "/"):
        assert httpx.get(server + path).status_code == 200, path
    schema = httpx.get(f"{server}/docs.json").json()["components"]["schemas"]["TabularRecord"]
    assert list(schema["properties"]) == meta.feature_names and schema["additionalProperties"] is False
