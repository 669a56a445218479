"""The train step as a Kubeflow Trainer TrainJob: N nodes x G GPUs of the project's own `torchrun dlpipe train`
(torch-distributed runtime, which sets torchrun's PET_* rendezvous variables), waited for, outputs copied back.

Inputs and outputs travel through a ReadWriteMany PVC mounted at /workspace by the pipeline step and by every
TrainJob pod. Outside a cluster ($KUBERNETES_SERVICE_HOST unset) the same step runs torchrun on this machine
with the same world size (components/train/launch.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from components.config import DistributedConfig, TrainConfig
from components.core.errors import DlpipeError
from components.core.io import read_json
from components.train.launch import torchrun_train, train_command, write_config

GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
WORKSPACE = Path("/workspace")
PATCH_MANAGER = "dlpipe.io/train"  # who owns the runtime patch (Trainer's runtimePatches are keyed by manager)
NODE = "node"  # the replicated job and container that the torch-distributed runtime names `node`
STEP_LABEL = "dlpipe.io/step"  # the same on every attempt of one pipeline run's train step
SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
SECRET_ENV = {  # the pipeline's Secrets, passed to the TrainJob's pods by reference, never by value
    "MLFLOW_TRACKING_URI": ("mlflow_secret", "uri"),
    "MLFLOW_TRACKING_USERNAME": ("mlflow_secret", "username"),
    "MLFLOW_TRACKING_PASSWORD": ("mlflow_secret", "password"),
}


def in_cluster() -> bool:
    return "KUBERNETES_SERVICE_HOST" in os.environ


def job_name(task: str, pipeline_run: str) -> str:
    """A DNS-1035 name, new on every attempt (a retried step must not collide with its failed TrainJob)."""
    return f"{_stem(task, pipeline_run)}-{secrets.token_hex(3)}"


def workdir_of(name: str) -> Path:
    """The TrainJob's folder on the workspace PVC: the same for every attempt of one pipeline run's step (the
    name without its per-attempt suffix), so a retried attempt resumes from the checkpoint the last one left."""
    return WORKSPACE / name.rsplit("-", 1)[0]


def _stem(task: str, pipeline_run: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", f"dlpipe-{task}-{pipeline_run}".lower())[:50].rstrip("-")


def manifest(
    name: str,
    namespace: str,
    image: str,
    task: str,
    workdir: Path,
    spec: DistributedConfig,
    env: dict[str, str],
    secret_names: dict[str, str],
) -> dict[str, Any]:
    """The TrainJob: `spec.nodes` pods, each `torchrun --no-python dlpipe train` with gpus_per_node processes."""
    env_list: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    for var, (secret_field, key) in SECRET_ENV.items():
        if var not in env:
            ref = {"name": secret_names[secret_field], "key": key, "optional": True}
            env_list.append({"name": var, "valueFrom": {"secretKeyRef": ref}})
    command = [
        "torchrun",
        "--no-python",
        *train_command(task, workdir / "data", workdir / "model", workdir / "augment", resume=True),
    ]
    trainer: dict[str, Any] = {
        "image": image,
        "command": command,
        "env": env_list,
        "numNodes": spec.nodes,
        "numProcPerNode": max(spec.gpus_per_node, 1),
    }
    if spec.gpus_per_node:
        trainer["resourcesPerNode"] = {"limits": {"nvidia.com/gpu": spec.gpus_per_node}}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainJob",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "dlpipe", STEP_LABEL: workdir_of(name).name},
        },
        "spec": {
            "runtimeRef": {"name": spec.runtime, "apiGroup": GROUP, "kind": "ClusterTrainingRuntime"},
            "trainer": trainer,
            "runtimePatches": [{"manager": PATCH_MANAGER, "trainingRuntimeSpec": _node_patch(spec.workspace_pvc)}],
        },
    }


def _node_patch(workspace_pvc: str) -> dict[str, Any]:
    """The runtime's `node` pods, patched (Trainer v2.3 runtimePatches): the shared workspace PVC at /workspace, an
    emptyDir at /tmp, non-root with a read-only root filesystem and no capabilities."""
    container = {
        "name": NODE,
        "volumeMounts": [{"name": "workspace", "mountPath": str(WORKSPACE)}, {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    pod = {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [
            {"name": "workspace", "persistentVolumeClaim": {"claimName": workspace_pvc}},
            {"name": "tmp", "emptyDir": {}},
        ],
        "containers": [container],
    }
    job = {"name": NODE, "template": {"spec": {"template": {"spec": pod}}}}
    return {"template": {"spec": {"replicatedJobs": [job]}}}


def train_job(
    data: Path,
    out: Path,
    cfg: TrainConfig,
    task: str,
    augment: Path,
    spec: DistributedConfig,
    image: str,
    name: str,
    secret_names: dict[str, str],
) -> dict[str, Any]:
    """Train `task` over spec.nodes x spec.gpus_per_node processes; return rank 0's train.json summary."""
    if not in_cluster():
        return torchrun_train(data, out, cfg, task, augment, nproc_per_node=spec.nodes * max(spec.gpus_per_node, 1))
    workdir = workdir_of(name)
    shutil.copytree(data, workdir / "data", dirs_exist_ok=True)
    shutil.copytree(augment, workdir / "augment", dirs_exist_ok=True)
    write_config(cfg, workdir / "model")
    env = {k: os.environ[k] for k in ("MLFLOW_TRACKING_URI", "DLPIPE_PIPELINE_RUN") if os.environ.get(k)}
    body = manifest(name, SA_NAMESPACE.read_text().strip(), image, task, workdir, spec, env, secret_names)
    _run(body, spec.timeout_s)
    shutil.copytree(workdir / "model", out, dirs_exist_ok=True)
    return read_json(Path(out) / "train.json")


def _run(body: dict[str, Any], timeout_s: int, api: Any = None, poll_s: float = 15) -> None:
    """Create the TrainJob and wait for its Complete or Failed condition. A TrainJob that fails, outlives
    `timeout_s`, or whose step is stopped (SIGTERM from a cancelled run) is deleted with its JobSet and pods
    (foreground propagation): none is left holding GPUs."""
    if api is None:
        from kubernetes import client, config

        config.load_incluster_config()
        api = client.CustomObjectsApi()
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    # An earlier attempt whose pod was killed outright (no cleanup ran) may still be training into the same
    # folder: delete it before this attempt resumes from the checkpoint there.
    step = body["metadata"]["labels"][STEP_LABEL]
    for old in api.list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, label_selector=f"{STEP_LABEL}={step}"
    )["items"]:
        _delete(api, namespace, old["metadata"]["name"])
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    try:
        with _sigterm_as_exit():
            _wait(api, namespace, name, timeout_s, poll_s)
    except BaseException:
        _delete(api, namespace, name)
        raise


def _delete(api: Any, namespace: str, name: str) -> None:
    """Delete a TrainJob with its JobSet and pods (foreground: the TrainJob goes once its pods are gone)."""
    api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, propagation_policy="Foreground")


def _wait(api: Any, namespace: str, name: str, timeout_s: int, poll_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name).get("status") or {}
        done = {c["type"]: c for c in status.get("conditions", []) if c.get("status") == "True"}
        if "Complete" in done:
            return
        if "Failed" in done:
            message = done["Failed"].get("message", "no message")
            raise DlpipeError(f"TrainJob {namespace}/{name} failed: {message}; deleted with its pods")
        time.sleep(poll_s)
    raise DlpipeError(f"TrainJob {namespace}/{name} did not finish within {timeout_s} s; deleted with its pods")


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """Kubernetes stops a pod with SIGTERM: make it an exception, so the cleanup runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
