"""Serving as a product: the gateway (two tasks from one real `bentoml serve`) behind the guard (bearer token,
pickle 415, size 413, timeout 504, request ids, JSON logs, per-task Prometheus series), graceful shutdown of a
task's own service, and a Bento built offline that serves its packed model without the registry."""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from components.core.contract import load_meta
from serving.bundle import load_bundle
from tests.helpers.serving import ROOT, bentoml_process

TOKEN = "test-token"


AUTH = {"Authorization": f"Bearer {TOKEN}"}


MAX_BODY = 300_000


def test_bundle_from_alias_pinned_version_or_export(tabular_artifacts: Path) -> None:
    registration = json.loads((tabular_artifacts / "registration.json").read_text())
    champion = load_bundle("tabular")
    assert (champion.source, champion.version) == ("models:/tabular@champion", registration["champion_version"])
    assert champion.metrics["roc_auc"] == pytest.approx(registration["score"])
    pinned = load_bundle("tabular", model_uri=f"models:/tabular/{registration['version']}")
    assert pinned.version == registration["version"] and pinned.source.endswith(f"/{registration['version']}")
    local = load_bundle("tabular", model_dir=tabular_artifacts)
    assert local.version == registration["version"] and local.metrics["roc_auc"] == registration["score"]


def test_gateway_picks_every_servable_task_by_kind(
    monkeypatch: pytest.MonkeyPatch, tabular_artifacts: Path, tmp_path: Path
) -> None:
    """Champions and exports whose kind some family serves; a masked-LM export is skipped, or refused by name."""
    from serving import gateway
    from tests.helpers.serving import _masked_lm_export

    _masked_lm_export(tmp_path / "artifacts" / "pretrain", "pretrain")
    monkeypatch.setenv("DLPIPE_ARTIFACTS", str(tmp_path / "artifacts"))
    for name in ("DLPIPE_TASKS", "DLPIPE_MODEL_DIR"):
        monkeypatch.delenv(name, raising=False)
    chosen = gateway.sources()
    assert chosen["tabular"] == {} and "pretrain" not in chosen  # the registry's champion; nothing to serve
    monkeypatch.setenv("DLPIPE_TASKS", "tabular,pretrain")
    with pytest.raises(RuntimeError, match="no servable model for 'pretrain': nothing to serve"):
        gateway.sources()
    monkeypatch.setenv("DLPIPE_TASKS", "tabular,cnn")
    with pytest.raises(RuntimeError, match=r"no servable model for \['cnn'\]"):
        gateway.sources()


@pytest.fixture(scope="module")
def gateway(tabular_artifacts: Path, digits_artifacts: Path, tmp_path_factory: pytest.TempPathFactory):
    """`bentoml serve serving.gateway:Gateway` on the registry's tabular and digits champions, with a token,
    a small body limit and a 3 s timeout for tabular; the URL and the server's log file."""
    tmp = tmp_path_factory.mktemp("serve-gateway")
    env = {"DLPIPE_TASKS": "tabular,digits", "DLPIPE_API_TOKEN": TOKEN, "DLPIPE_MAX_BODY_BYTES": str(MAX_BODY)}
    env |= {"DLPIPE_SERVING": '{"tabular": {"timeout_s": 3}}'}
    with bentoml_process("serving.gateway:Gateway", tmp, env) as (_, url):
        yield url, tmp / "server.log"


@pytest.fixture(scope="module")
def record(tabular_artifacts: Path) -> dict[str, float]:
    meta = load_meta(tabular_artifacts / "data")
    return dict(zip(meta.feature_names, meta.scaler["mean"], strict=True))


def _png(digits_artifacts: Path) -> bytes:
    with np.load(digits_artifacts / "data/test.npz") as data:
        x = data["x"][0, 0]
    buf = io.BytesIO()
    Image.fromarray(((x - x.min()) / (x.max() - x.min()) * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_gateway_serves_two_tasks_behind_the_token(gateway, record, digits_artifacts: Path) -> None:
    url, _ = gateway
    with httpx.Client(base_url=url, timeout=30) as http:
        tabular = http.post("/tabular/predict", json={"records": [record]}, headers=AUTH)
        assert tabular.status_code == 200 and tabular.json()[0]["label"] in ("benign", "malignant")
        files = {"file": ("d.png", _png(digits_artifacts))}
        digits = http.post("/digits/predict_image", files=files, data={"top_k": "2"}, headers=AUTH)
        assert digits.status_code == 200 and len(digits.json()) == 2, digits.text
        assert (
            http.post("/digits/predict", json={"images": [{"pixels": [[0] * 8] * 8}]}, headers=AUTH).status_code == 200
        )
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            refused = http.post("/tabular/predict", json={"records": [record]}, headers=headers)
            assert refused.status_code == 401 and "bearer token" in refused.json()["error"]
            assert refused.headers["www-authenticate"] == "Bearer"
        assert http.post("/digits/predict_image", files=files).status_code == 401
        for open_path in ("/tasks", "/tabular/info", "/digits/info", "/docs.json", "/livez", "/readyz", "/metrics"):
            assert http.get(open_path).status_code == 200, open_path
        assert http.post("/predict", json={"records": [record]}, headers=AUTH).status_code == 404  # no root routes


def test_tasks_and_info(gateway, tabular_artifacts: Path) -> None:
    url, _ = gateway
    listed = httpx.get(f"{url}/tasks").json()
    assert [(t["task"], t["family"]) for t in listed] == [("tabular", "tabular"), ("digits", "image")]
    info = httpx.get(f"{url}/tabular/info").json()
    assert info == listed[0]["info"]
    registration = json.loads((tabular_artifacts / "registration.json").read_text())
    assert info["source"] == "models:/tabular@champion" and info["version"] == registration["champion_version"]
    assert info["metrics"]["roc_auc"] == pytest.approx(registration["score"])
    schema = info["input_schema"]["/tabular/predict"]
    assert schema["required"] == ["records"] and schema["properties"]["records"]["maxItems"] == 1000
    digits = httpx.get(f"{url}/digits/info").json()
    assert set(digits["input_schema"]) == {"/digits/predict_image", "/digits/predict"}
    assert digits["preprocessing"]["resize"] == [8, 8] and len(digits["classes"]) == 10


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        ("application/python-pickle", b"{}"),
        ("application/x-pickle", b"{}"),
        ("application/vnd.bentoml+pickle", b"{}"),
        ("application/octet-stream", b"pickled"),
    ],
)
def test_pickle_gets_415(ctype: str, body: bytes, gateway, record) -> None:
    import pickle

    url, _ = gateway
    content = pickle.dumps({"records": [record]}) if body == b"pickled" else body
    answer = httpx.post(f"{url}/tabular/predict", content=content, headers={"Content-Type": ctype, **AUTH})
    assert answer.status_code == 415 and "pickle is never accepted" in answer.json()["error"]


def test_too_big_gets_413_with_or_without_content_length(gateway) -> None:
    url, _ = gateway
    big = b'{"records": [' + b" " * MAX_BODY + b"]}"
    headers = {"Content-Type": "application/json", **AUTH}
    assert httpx.post(f"{url}/tabular/predict", content=big, headers=headers).status_code == 413
    chunks = (big[i : i + 65536] for i in range(0, len(big), 65536))  # chunked: the limit is counted while reading
    answer = httpx.post(f"{url}/tabular/predict", content=chunks, headers=headers)
    assert answer.status_code == 413 and f"limit of {MAX_BODY} bytes" in answer.json()["error"]


def read_response(conn: socket.socket) -> tuple[int, bytes]:
    """Status and whole body of one response (head and body may arrive in separate packets)."""
    response = http.client.HTTPResponse(conn)
    response.begin()
    return response.status, response.read()


def test_stalled_request_gets_504_within_the_task_timeout(gateway) -> None:
    url, _ = gateway
    host, port = url.removeprefix("http://").split(":")
    head = "POST /tabular/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=20) as conn:
        conn.sendall(f"{head}Authorization: Bearer {TOKEN}\r\n\r\n".encode() + b'{"records": [')  # then nothing
        answer = read_response(conn)
    assert answer[0] == 504 and b"tabular task's timeout" in answer[1]
    assert 3 <= time.monotonic() - started < 15


def test_request_id_metrics_and_json_logs(gateway, record) -> None:
    url, log = gateway
    with httpx.Client(base_url=url, timeout=30) as http:
        mine = http.post("/tabular/predict", json={"records": [record] * 3}, headers={**AUTH, "X-Request-ID": "abc-42"})
        assert mine.headers["x-request-id"] == "abc-42"
        fresh = http.get("/tabular/info", headers={"X-Request-ID": "not ok!"}).headers["x-request-id"]
        assert len(fresh) == 32 and fresh != "abc-42"
        http.post("/digits/predict", json={"images": [{"pixels": [[0] * 8] * 8}] * 2}, headers=AUTH)
        assert http.post("/tabular/predict", json={"records": [record]}).status_code == 401
        text = http.get("/metrics").text
    families = text_string_to_metric_families(text)
    samples = {(s.name, *sorted(s.labels.values())): s.value for family in families for s in family.samples}
    assert samples[("dlpipe_requests_total", "/tabular/predict", "200", "tabular")] >= 1
    assert samples[("dlpipe_requests_total", "/tabular/predict", "401", "tabular")] >= 1
    assert samples[("dlpipe_request_duration_seconds_count", "/tabular/predict", "tabular")] >= 1
    assert samples[("dlpipe_batch_size_count", "predict", "tabular")] >= 1
    assert samples[("dlpipe_batch_size_count", "digits", "predict")] >= 1
    deadline = time.monotonic() + 10
    while not (lines := [line for line in log.read_text().splitlines() if '"abc-42"' in line]):
        assert time.monotonic() < deadline, "no access-log line with the request id"
        time.sleep(0.2)
    entry = json.loads(lines[0])
    assert entry["request_id"] == "abc-42" and entry["path"] == "/tabular/predict" and entry["status"] == 200
    assert entry["task"] == "tabular" and entry["logger"] == "dlpipe.access" and entry["ms"] > 0


def test_shutdown_finishes_the_request_in_flight(tabular_artifacts: Path, record, tmp_path: Path) -> None:
    env = {"DLPIPE_TASK": "tabular", "DLPIPE_MODEL_DIR": str(tabular_artifacts)}
    body = json.dumps({"records": [record]}).encode()
    with bentoml_process("serving.app:Service", tmp_path, env, per_core=True) as (proc, url):
        host, port = url.removeprefix("http://").split(":")
        head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
        with socket.create_connection((host, int(port)), timeout=30) as conn:
            conn.sendall(f"{head}\r\n\r\n".encode() + body[:20])
            time.sleep(0.5)  # the request is in flight when the server is told to stop
            proc.send_signal(signal.SIGTERM)
            time.sleep(1)
            conn.sendall(body[20:])
            answer = read_response(conn)
        assert answer[0] == 200 and b'"label"' in answer[1]
        assert proc.wait(timeout=30) == 0


def test_bento_builds_offline_and_serves_its_packed_model(tabular_artifacts: Path, tmp_path: Path) -> None:
    """`dlpipe serve build` offline (pip never runs: pinned, not locked); the Bento then serves the registry's
    champion from its own model store, with the registry gone."""
    env = {k: v for k, v in os.environ.items() if k not in ("DLPIPE_MODEL_DIR", "DLPIPE_MODEL_URI", "DLPIPE_TASK")}
    env |= {"BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "true", "PIP_NO_INDEX": "1"}
    started = time.monotonic()
    cmd = [str(Path(sys.executable).parent / "dlpipe"), "serve", "build", "--task", "tabular"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    tag = done.stdout.strip().splitlines()[-1]
    assert tag.startswith("dlpipe-tabular:"), done.stdout
    print(f"dlpipe serve build --task tabular: {seconds:.1f} s -> {tag}")
    bento = tmp_path / "bentoml/bentos" / tag.replace(":", "/")
    spec = (bento / "bento.yaml").read_text()
    assert "lock_packages: false" in (bento / "src/bentofile.yaml").read_text() and "dlpipe-tabular:" in spec
    assert json.loads((bento / "src/serving/packed.json").read_text())["task"] == "tabular"
    no_registry = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'empty.db'}", "BENTOML_HOME": env["BENTOML_HOME"]}
    with bentoml_process(tag, tmp_path, no_registry) as (_, url):
        info: dict[str, Any] = httpx.get(f"{url}/info").json()
        registration = json.loads((tabular_artifacts / "registration.json").read_text())
        assert info["task"] == "tabular" and info["version"] == registration["champion_version"]
        assert info["metrics"]["roc_auc"] == pytest.approx(registration["score"])
