"""Every manifest in deploy/ (as committed, and as kustomize renders it where kubectl is installed) and every
manifest the code generates (the serving files, the TrainJob) is valid against Kubernetes' published OpenAPI
schemas, the TrainJob against Kubeflow Trainer's CRD; every pod is locked down and limited; no secret on a
command line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import PARAMS, ROOT
from tests.helpers.k8s import k8s_errors, trainjob_errors

DEPLOY = ROOT / "deploy"
FILES = sorted(p for p in DEPLOY.rglob("*.yaml") if p.name != "kustomization.yaml")
KUSTOMIZATIONS = sorted(p.parent for p in DEPLOY.rglob("kustomization.yaml"))


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _trainjob(**spec_changes: Any) -> dict[str, Any]:
    from components.config import DistributedConfig
    from components.train.trainjob import job_name, manifest

    name = job_name("tabular_wine", "5f1c2a90-8e3b-4b7e-9a51-0c2d7e9b1f00")
    secrets = {"mlflow_secret": "dlpipe-mlflow", "s3_secret": "dlpipe-s3", "optuna_secret": "dlpipe-optuna"}
    job = manifest(
        name, "kubeflow", "registry.example/dlpipe:0.1.0-gpu", "tabular_wine", Path("/workspace") / name,
        DistributedConfig(nodes=2, gpus_per_node=4), {"DLPIPE_PIPELINE_RUN": "5f1c2a90"}, secrets,
    )  # fmt: skip
    job["spec"] |= spec_changes
    return job


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_deploy_manifests_are_valid_kubernetes_objects(path: Path) -> None:
    errors = [e for doc in _docs(path) for e in k8s_errors(doc)]
    assert errors == []


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) is not installed")
@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_kustomize_output_is_valid(folder: Path, tmp_path: Path) -> None:
    """What `kubectl apply -k` would send, with the example Secrets: namespaces, labels, images, generated Secrets."""
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    for example in copy.glob("*.env.example"):
        shutil.copy(example, example.with_suffix(""))
    out = subprocess.run(["kubectl", "kustomize", str(copy)], capture_output=True, text=True, check=True).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert docs and [e for d in docs for e in k8s_errors(d)] == []


def test_generated_serving_manifests_are_the_committed_ones(tmp_path: Path) -> None:
    """deploy/serving/ holds exactly what serving/manifests.py generates: one file per task of params.yaml and per
    model an experiment registers, which are the experiments' own names."""
    from components.config import tasks
    from components.experiments import encoder, transfer_imagenet
    from serving.manifests import EXPERIMENT_MODELS, write

    assert EXPERIMENT_MODELS == (encoder.TASK, transfer_imagenet.TASK)
    for path in write(tmp_path, tasks(PARAMS)):
        committed = DEPLOY / "serving" / path.name
        assert committed.is_file() and committed.read_text() == path.read_text().replace(
            str(tmp_path), "deploy/serving"
        )


def test_trainjob_is_valid_against_the_trainer_crd() -> None:
    job = _trainjob()
    assert trainjob_errors(job) == []
    trainer = job["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"], trainer["resourcesPerNode"]) == (
        2, 4, {"limits": {"nvidia.com/gpu": 4}}
    )  # fmt: skip
    # the check is not vacuous: Trainer v2.0's podSpecOverrides (gone since v2.2) and a bad count are refused
    errors = trainjob_errors(_trainjob(podSpecOverrides=[], trainer={**trainer, "numNodes": "2"}))
    assert any("podSpecOverrides" in e for e in errors) and any(e.startswith("spec/trainer/numNodes") for e in errors)


def test_the_validators_refuse_what_the_api_server_refuses() -> None:
    deployment = _docs(DEPLOY / "serving" / "tabular.yaml")[0]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["replicas"] = "1"
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # a typo: unknown field
    errors = k8s_errors(broken)
    assert len(errors) == 1 and ("replicas" in errors[0] or "readinesProbe" in errors[0])


def _pods(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    template = spec.get("jobTemplate", {}).get("spec", spec).get("template")
    return [template["spec"]] if template else []


ALL_DOCS = [d for p in FILES for d in _docs(p)]
POD_DOCS = [d for d in ALL_DOCS if _pods(d)]


@pytest.mark.parametrize("doc", POD_DOCS, ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_pod_is_locked_down_and_limited(doc: dict[str, Any]) -> None:
    (pod,) = _pods(doc)
    assert pod["securityContext"]["runAsNonRoot"] is True
    for c in pod.get("initContainers", []) + pod["containers"]:
        sec = c["securityContext"]
        assert sec["readOnlyRootFilesystem"] is True and sec["allowPrivilegeEscalation"] is False, c["name"]
        assert sec["capabilities"]["drop"] == ["ALL"], c["name"]
        assert {"cpu", "memory"} <= set(c["resources"]["limits"]), c["name"]
        argv = " ".join(c.get("command", []) + c.get("args", []))
        assert (
            not any(word in argv for word in ("PASSWORD", "password", "TOKEN", "SECRET"))
            or "$" not in argv
            or (
                c["name"].startswith("refuse-example")  # reads them from its environment to refuse the examples
            )
        ), c["name"]


def test_trainjob_pods_are_locked_down() -> None:
    patch = _trainjob()["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]
    (job,) = patch["template"]["spec"]["replicatedJobs"]
    pod = job["template"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
