"""The Kubernetes manifests of deploy/serving/ (kustomize): per task a Deployment of `dlpipe serve --task T` on the
component image, its Service, HorizontalPodAutoscaler and NetworkPolicy; the gateway (`--task all`) likewise.
`python -m serving.manifests deploy/serving` writes them; a test checks the committed files equal this output.

Every pod: non-root (the image's uid 1000), read-only root filesystem (/tmp is an emptyDir: BentoML's home, the
model downloaded from the registry), no capabilities, no privilege escalation, RuntimeDefault seccomp, requests
and limits. The model is the registry's `champion` alias (MLFLOW_TRACKING_URI from the dlpipe-mlflow Secret); the
API token comes from the dlpipe-serving Secret, and an init container refuses the example token left unchanged.
Only the gateway and the ingress controller's namespace may reach a task's pods; only the ingress controller may
reach the gateway.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

PORT = 3000
IMAGE = "dlpipe:0.1.0"  # kustomization.yaml's `images:` maps it to a registry's
GATEWAY = "gateway"
INGRESS_NAMESPACE = "ingress-nginx"
EXAMPLE = "change-me"  # the prefix of every example secret value in deploy/
# models that experiment stages register and `dlpipe serve --task` serves like a task's (components/experiments:
# encoder_finetune's `encoder`, transfer_imagenet's `fashion_transfer`)
EXPERIMENT_MODELS = ("encoder", "fashion_transfer")


def _name(task: str) -> str:
    return "dlpipe-gateway" if task == GATEWAY else f"dlpipe-serve-{task.replace('_', '-')}"


def _labels(task: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": _name(task), "app.kubernetes.io/component": "serving"}


def _env(task: str) -> list[dict[str, Any]]:
    secret = {"name": "dlpipe-serving", "key": "token"}
    return [
        {"name": "DLPIPE_API_TOKEN", "valueFrom": {"secretKeyRef": secret}},
        {"name": "MLFLOW_TRACKING_URI", "valueFrom": {"secretKeyRef": {"name": "dlpipe-mlflow", "key": "uri"}}},
        {"name": "HOME", "value": "/tmp"},
        {"name": "BENTOML_HOME", "value": "/tmp/bentoml"},
        {"name": "DLPIPE_HOME", "value": "/tmp"},
    ]


SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def deployment(task: str) -> dict[str, Any]:
    """`dlpipe serve --task T` (the gateway: `--task all`) serving the registry's champion on PORT."""
    serve_task = "all" if task == GATEWAY else task
    probe = {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5, "failureThreshold": 3}
    refuse = (  # the script reads the token from the environment: it never appears on a command line
        f'case "$DLPIPE_API_TOKEN" in ""|{EXAMPLE}*) echo "error: the dlpipe-serving Secret still holds the example '
        'token (or none): set token= in serving.env" >&2; exit 1;; esac'
    )
    small = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": _name(task), "labels": _labels(task)},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": _labels(task)},
            "template": {
                "metadata": {"labels": _labels(task)},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": POD_SECURITY,
                    "initContainers": [
                        {
                            "name": "refuse-example-token",
                            "image": IMAGE,
                            "command": ["sh", "-c", refuse],
                            "env": _env(task)[:1],
                            "securityContext": SECURITY,
                            "resources": small,
                        }
                    ],
                    "containers": [
                        {
                            "name": "serve",
                            "image": IMAGE,
                            "args": ["serve", "--task", serve_task, "--host", "0.0.0.0", "--port", str(PORT)],
                            "ports": [{"name": "http", "containerPort": PORT}],
                            "env": _env(task),
                            "readinessProbe": probe,
                            "livenessProbe": {**probe, "httpGet": {"path": "/livez", "port": "http"}},
                            # the model is downloaded from the registry at start: up to 5 minutes
                            "startupProbe": {**probe, "failureThreshold": 60},
                            "resources": {
                                "requests": {"cpu": "500m", "memory": "1Gi"},
                                "limits": {"cpu": "2", "memory": "3Gi" if task == GATEWAY else "2Gi"},
                            },
                            "securityContext": SECURITY,
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}}],
                },
            },
        },
    }


def service(task: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": _name(task), "labels": _labels(task)},
        "spec": {"selector": _labels(task), "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }


def autoscaler(task: str) -> dict[str, Any]:
    """1..4 replicas at 70 % of the CPU request."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": _name(task), "labels": _labels(task)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": _name(task)},
            "minReplicas": 1,
            "maxReplicas": 4,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                }
            ],
        },
    }


def network_policy(task: str) -> dict[str, Any]:
    """Ingress on PORT from the ingress controller's namespace, and (task services) from the gateway."""
    peers: list[dict[str, Any]] = [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": INGRESS_NAMESPACE}}}
    ]
    if task != GATEWAY:
        peers.append({"podSelector": {"matchLabels": _labels(GATEWAY)}})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": _name(task), "labels": _labels(task)},
        "spec": {
            "podSelector": {"matchLabels": _labels(task)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": PORT}]}],
        },
    }


def manifests(task: str) -> list[dict[str, Any]]:
    return [deployment(task), service(task), autoscaler(task), network_policy(task)]


def write(folder: Path, tasks: list[str]) -> list[Path]:
    """One file per task, per experiment model and gateway.yaml in `folder`; returns the paths written."""
    written = []
    for task in [*tasks, *EXPERIMENT_MODELS, GATEWAY]:
        path = folder / f"{task}.yaml"
        head = f"# Generated by `python -m serving.manifests {folder}` (serving/manifests.py): edit that, not this.\n"
        path.write_text(head + yaml.safe_dump_all(manifests(task), sort_keys=False, width=120))
        written.append(path)
    return written


if __name__ == "__main__":
    from components.config import load_params, tasks

    for written in write(Path(sys.argv[1]), tasks(load_params(Path("params.yaml")))):
        print(f"wrote {written}")
