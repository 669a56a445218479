"""Servers the serving benchmarks start on loopback: a real `bentoml serve` of a task's local export, or any
other command, in its own process group (so its workers stop with it), ready when a URL answers 200."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"


@dataclass(frozen=True)
class Server:
    url: str
    pid: int

    def rss_mb(self) -> float:
        """Resident memory of the server's whole process tree (BentoML runs workers as children)."""
        root = psutil.Process(self.pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def run(cmd: list[str], env: Mapping[str, str], ready: str, log: Path, ready_s: float = 120) -> Iterator[int]:
    """Start `cmd`; yield its pid once GET `ready` answers 200; stop its process group on exit."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + ready_s
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{' '.join(cmd)} did not get ready:\n{log.read_text()[-3000:]}")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(ready, timeout=1).status_code == 200:
                        break
                time.sleep(0.2)
            yield proc.pid
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def export_of(task: str, artifacts: Path = ARTIFACTS) -> Path | None:
    """artifacts/<task> when it holds an exported model (after `make run`), else None."""
    folder = artifacts / task
    return folder if (folder / "model.onnx").is_file() and (folder / "data" / "meta.json").is_file() else None


@contextlib.contextmanager
def bentoml(task: str, model_dir: Path, log_dir: Path, env: Mapping[str, str] | None = None) -> Iterator[Server]:
    """`bentoml serve` of the task's service (as `dlpipe serve --model-dir` runs it) on a free loopback port."""
    from serving.cli import SERVICE

    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if k not in ("DLPIPE_MODEL_URI", "DLPIPE_MODEL_DIR")}
    full_env |= {"DLPIPE_TASK": task, "DLPIPE_MODEL_DIR": str(model_dir.resolve()), "BENTOML_DO_NOT_TRACK": "true"}
    full_env |= {"BENTOML_HOME": str(log_dir / "bentoml"), "PYTHONPATH": str(ROOT), **(env or {})}
    cmd = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with run(cmd, full_env, f"{url}/readyz", log_dir / f"{task}.log") as pid:
        yield Server(url, pid)


@contextlib.contextmanager
def gateway(tasks: list[str], artifacts: Path, log_dir: Path) -> Iterator[Server]:
    """The gateway (`dlpipe serve --task all`) serving `tasks` from their exports under `artifacts`."""
    from serving.cli import GATEWAY

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DLPIPE_MODEL_URI"}
    folder = Path(
        os.path.abspath(artifacts)
    )  # relative to the repo root when inside it: what /info shows as the source
    folder = folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder
    env |= {"DLPIPE_TASKS": ",".join(tasks), "DLPIPE_MODEL_DIR": str(folder), "PYTHONPATH": str(ROOT)}
    env |= {"BENTOML_HOME": str(log_dir / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    cmd = [sys.executable, "-m", "bentoml", "serve", GATEWAY, "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with run(cmd, env, f"{url}/readyz", log_dir / "gateway.log") as pid:
        yield Server(url, pid)
