"""The cluster path's tracking, proven offline: the tabular steps against a real MLflow server on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import PARAMS, run_task

# as deploy/engines/mlflow.yaml runs it: without MLflow's job runner (GenAI jobs, which dlpipe does not submit). On,
# the server starts 7 task-queue consumer processes: 27 s of CPU here, and this test took 34 s instead of 22 s.
NO_JOB_RUNNER = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url}/health did not answer within {timeout_s} s:\n{log.read_text()[-3000:]}")


def _start_server(tmp_path: Path, store: Path, starts: int = 3) -> tuple[subprocess.Popen, str]:
    """`mlflow server` on a free loopback port, healthy. The port is free when chosen, but another process (a
    parallel test's server) can take it before the server binds: such a start is tried again on a new port."""
    mlflow_exe = str(Path(sys.executable).with_name("mlflow"))
    for start in range(1, starts + 1):
        port, log = _free_port(), tmp_path / f"server-{start}.log"
        server = [mlflow_exe, "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}"]
        server += ["--artifacts-destination", str(store), "--host", "127.0.0.1", "--port", str(port)]
        with log.open("w") as out:
            proc = subprocess.Popen(
                [*server, "--workers", "1"], stdout=out, stderr=subprocess.STDOUT, env=os.environ | NO_JOB_RUNNER
            )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, proc, log)
            return proc, url
        except BaseException as err:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            # uvicorn: "address already in use"; gunicorn: "Connection in use"
            if not isinstance(err, RuntimeError) or start == starts or "in use" not in log.read_text().lower():
                raise
    raise AssertionError("unreachable")


@pytest.mark.e2e
def test_tabular_steps_track_to_a_real_mlflow_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Client-server tracking: the tabular steps log (asynchronously) to `mlflow server` over HTTP; artifacts go
    through the server's proxy into its store; the registry answers `models:/tabular@champion`."""
    import mlflow
    from mlflow import MlflowClient

    from components.core import tracking

    store = tmp_path / "server-artifacts"
    proc, url = _start_server(tmp_path, store)
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
        monkeypatch.setitem(PARAMS["tune"], "tabular", {"n_trials": 0})  # tuning has its own tests
        tracking.configure()
        assert mlflow.config.MLFLOW_ENABLE_ASYNC_LOGGING.get()  # queued: one round trip per batch, not per call
        art = run_task("tabular", tmp_path / "run", register=True, epochs=8)

        client = MlflowClient(tracking_uri=url, registry_uri=url)
        version = client.get_model_version_by_alias("tabular", "champion")
        run = client.get_run(version.run_id)
        assert run.info.status == "FINISHED" and run.info.artifact_uri.startswith("mlflow-artifacts:")
        assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 8  # every epoch arrived
        assert run.data.metrics["test_roc_auc"] > 0.9 and run.data.params["task"] == "tabular"
        assert list(store.rglob("model.onnx"))  # uploaded through the server into its artifact store
        local = mlflow.artifacts.download_artifacts("models:/tabular@champion", dst_path=str(tmp_path / "dl"))
        assert (Path(local) / "model.onnx").read_bytes() == (art / "model.onnx").read_bytes()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        mlflow.config.enable_async_logging(False)
        monkeypatch.undo()
        tracking.configure()  # point mlflow's process-wide URI back at the session's store, not the dead server
