"""`dlpipe pipeline submit | schedule | list | status`: errors in one line, and what submit sends to the KFP API."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli.pipeline import pipeline_app
from tests.conftest import ROOT


def _one_error_line(args: list[str], starts: str) -> None:
    params = ["--params", str(ROOT / "params.yaml")] if args[0] in ("submit", "schedule") else []
    result = CliRunner().invoke(pipeline_app, [*args, *params])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {starts}"), result.output


def _free_port() -> int:
    with socket.socket() as sock:  # bind then close: a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    "command", [["submit"], ["schedule", "--cron", "0 3 * * *"], ["list"], ["status", "some-run-id"]]
)
def test_operating_an_unreachable_host_fails_in_one_line(command: list[str]) -> None:
    _one_error_line([*command, "--host", f"http://127.0.0.1:{_free_port()}"], "cannot reach Kubeflow Pipelines")


def test_rejected_token_and_bad_input_fail_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Rejects(BaseHTTPRequestHandler):  # an API gateway that refuses the token
        def do_GET(self) -> None:
            self.send_response(401, "Unauthorized")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Rejects)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        _one_error_line(["submit", "--host", host, "--token", "expired"], f"Kubeflow Pipelines at {host} rejected")
        _one_error_line(["list", "--host", host], f"Kubeflow Pipelines at {host} needs a token")
    finally:
        server.shutdown()
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "missing"))
    _one_error_line(["list", "--in-cluster"], "--in-cluster: no service-account token")
    _one_error_line(["submit", "--host", host, "-s", "train.tabular.lr=-1"], "train.tabular.lr: Input should be")
    _one_error_line(["submit", "--host", host, "-s", "train.nosuch.lr=1"], "override 'train.nosuch.lr=1'")
    _one_error_line(["submit", "--host", host, "--task", "nosuch"], "unknown task 'nosuch'")
    _one_error_line(["schedule", "--host", host, "--cron", "daily"], "--cron 'daily'")
    _one_error_line(["list"], "no Kubeflow Pipelines host")


def test_submit_sends_the_compiled_pipeline_and_the_run_parameters() -> None:
    """Against a stand-in for the KFP REST API (v2beta1): submit --wait creates the experiment, posts the `all`
    spec with its PlatformSpec and the run's parameters, polls the run and reports its final state."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[tuple[str, str, dict]] = []

    class FakeKfp(BaseHTTPRequestHandler):
        def _send(self, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            seen.append(("GET", self.path, {}))
            self._send({"run_id": "r1", "state": "SUCCEEDED"} if self.path.startswith("/apis/v2beta1/runs/") else {})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(("POST", self.path, body))
            self._send({"experiment_id": "e1", "run_id": "r1", "state": "PENDING"})

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKfp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"http://127.0.0.1:{server.server_address[1]}"
    args = ["submit", "--host", host, "--task", "all", "--only", "tabular", "-s", "train.tabular.lr=0.01"]
    try:
        result = CliRunner().invoke(pipeline_app, [*args, "--wait", "--params", str(ROOT / "params.yaml")])
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    assert f"submitted run r1: {host}/#/runs/details/r1" in result.output and "run r1: SUCCEEDED" in result.output
    (run,) = [body for method, path, body in seen if method == "POST" and path == "/apis/v2beta1/runs"]
    assert run["runtime_config"]["parameters"] == {"params_overrides": ["train.tabular.lr=0.01"], "tasks": ["tabular"]}
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "dlpipe-all"
    assert "kubernetes" in run["pipeline_spec"]["platform_spec"]["platforms"]
    assert ("POST", "/apis/v2beta1/experiments", {"display_name": "dlpipe-all", "namespace": ""}) in seen
