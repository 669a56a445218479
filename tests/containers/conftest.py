"""Container tests (`make test-containers`, not part of `make test`): podman's Docker-compatible API socket,
started here for the session (runc, cgroupfs, no default ulimits: deploy/images/containers.conf) and stopped at
the end, and the component image `make image` built. Skips, with the reason, when podman or the image is absent."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.conftest import ROOT

IMAGE = os.environ.get("DLPIPE_IMAGE") or f"localhost/dlpipe:{version('dlpipe')}"
CONF = ROOT / "deploy" / "images" / "containers.conf"


def podman(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF") or str(CONF)}
    return subprocess.run(["podman", "--runtime", "runc", *args], env=env, capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="session")
def image() -> str:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (make setup installs it as root: apt-get install podman buildah runc)")
    if podman("image", "exists", IMAGE).returncode != 0:
        pytest.skip(f"image {IMAGE} is not built: run `make image`")
    return IMAGE


@pytest.fixture(scope="session")
def docker_host(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """podman's Docker-compatible API on a unix socket of this session: $DOCKER_HOST for kfp.local's DockerRunner.
    Niced: the containers it starts (the pipeline steps) inherit it and leave the cores to interactive work."""
    sock = tmp_path_factory.mktemp("podman") / "podman.sock"
    env = {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF") or str(CONF)}
    proc = subprocess.Popen(
        ["nice", "-n", "10", "podman", "--runtime", "runc", "system", "service", "--time=0", f"unix://{sock}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"podman system service did not start: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.2)
    try:
        yield f"unix://{sock}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def dlpipe(
    *args: str, home: Path, env: dict[str, str] | None = None, timeout: float = 1500
) -> subprocess.CompletedProcess:
    """The `dlpipe` CLI of this checkout, with `home` as its DLPIPE_HOME."""
    environ = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DLPIPE_HOME")}
    environ |= {"DLPIPE_HOME": str(home), "PYTHONPATH": str(ROOT), **(env or {})}
    code = "from pipelines.cli import main; main()"
    cmd = [sys.executable, "-c", code, *args]
    return subprocess.run(cmd, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=timeout)
