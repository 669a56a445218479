"""The pipelines run inside the component image (kfp.local's DockerRunner on podman) with the metrics of the
SubprocessRunner; a dataset the image cannot have fails at ingest saying what to pass; the image serves a task
from a read-only container on loopback exactly as the local service does, behind its token and limits."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path

import httpx
import pytest

from tests.containers.conftest import dlpipe, podman
from tests.helpers.serving import _free_port, bentoml_process


def _metrics(home: Path) -> dict[str, dict[str, float]]:
    (run,) = [p for p in (home / "local_outputs").iterdir() if p.is_dir() and p.name.startswith("dlpipe-")]
    return {p.stem: json.loads(p.read_text()) for p in sorted(run.glob("evaluate*/metrics/*.json"))}


# the `all` pipeline narrowed to one tabular and one image task: its select step, then the two tasks' steps
NARROWED = ["--only", "tabular_wine", "--only", "digits"]


@pytest.mark.parametrize("task", ["tabular", "digits", "all"])
def test_pipeline_in_containers_equals_subprocess(task: str, image: str, docker_host: str, tmp_path: Path) -> None:
    boxed, local = tmp_path / "containers", tmp_path / "subprocess"
    narrow = NARROWED if task == "all" else []
    started = time.perf_counter()
    ran = dlpipe("pipeline", "run", "--local", "--task", task, *narrow, "--container", image, home=boxed,
                 env={"DOCKER_HOST": docker_host})  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    boxed_s = time.perf_counter() - started
    # every step ran in a container: they tracked into the only folder the containers see, not the home
    assert (boxed / "local_outputs" / "mlflow.db").is_file() and not (boxed / "mlflow.db").exists()
    started = time.perf_counter()
    ran = dlpipe("pipeline", "run", "--local", "--task", task, *narrow, home=local)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    print(f"{task}: containers {boxed_s:.0f} s, subprocess {time.perf_counter() - started:.0f} s")
    got, want = _metrics(boxed), _metrics(local)
    assert got.keys() == want.keys() and got
    for name, values in want.items():
        assert got[name].keys() == values.keys()
        assert all(abs(got[name][k] - v) <= 1e-6 for k, v in values.items()), (name, got[name], values)


def test_a_dataset_the_image_cannot_have_fails_at_ingest_saying_what_to_pass(
    image: str, docker_host: str, tmp_path: Path
) -> None:
    ran = dlpipe("pipeline", "run", "--local", "--task", "mnist", "--container", image, home=tmp_path,
                 env={"DOCKER_HOST": docker_host}, timeout=300)  # fmt: skip
    assert ran.returncode != 0
    out = ran.stdout + ran.stderr
    assert "task mnist: dataset 'mnist_test' is not in the image" in out and "dvc_remote=" in out
    assert "Executing task 'prepare'" not in out.replace("\x1b[96m", "").replace("\x1b[0m", "")


@contextlib.contextmanager
def _container_service(image: str, model: Path, token: str, max_body: int):
    """`dlpipe serve` of the tabular export in a container: read-only root, no capabilities, loopback only."""
    port = _free_port()
    name = f"dlpipe-serve-test-{port}"
    run = podman(
        "run", "-d", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "-v", f"{model}:/model:ro",
        "-e", "HOME=/tmp", "-e", "BENTOML_HOME=/tmp/bentoml", "-e", "DLPIPE_HOME=/tmp",
        "-e", f"DLPIPE_API_TOKEN={token}", "-e", f"DLPIPE_MAX_BODY_BYTES={max_body}",
        image, "serve", "--task", "tabular", "--model-dir", "/model", "--host", "127.0.0.1", "--port", str(port),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail("the container did not get ready:\n" + podman("logs", name).stdout[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        podman("rm", "-f", name)


def test_the_image_serves_as_the_local_service_does(image: str, tabular_artifacts: Path, tmp_path: Path) -> None:
    from components.core.contract import load_meta

    meta = load_meta(tabular_artifacts / "data")
    records = [dict(zip(meta.feature_names, meta.scaler["mean"], strict=True))]
    records.append({k: v * 1.5 for k, v in records[0].items()})
    model = shutil.copytree(tabular_artifacts, tmp_path / "model")  # readable by the image's user (uid 1000)
    for path in [model, *model.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    token = "container-test-token"
    env = {"DLPIPE_TASK": "tabular", "DLPIPE_MODEL_DIR": str(tabular_artifacts), "DLPIPE_API_TOKEN": token}
    auth = {"Authorization": f"Bearer {token}"}
    with bentoml_process("serving.app:Service", tmp_path, env) as (_, local):
        want = httpx.post(f"{local}/predict", json={"records": records}, headers=auth, timeout=30)
    with _container_service(image, model, token, max_body=4096) as url:
        got = httpx.post(f"{url}/predict", json={"records": records}, headers=auth, timeout=30)
        assert got.status_code == want.status_code == 200 and got.json() == want.json()
        assert httpx.post(f"{url}/predict", json={"records": records}, timeout=30).status_code == 401
        big = {"records": records * 200}
        assert httpx.post(f"{url}/predict", json=big, headers=auth, timeout=30).status_code == 413
