"""The Kubeflow TrainJob manifest matches Kubeflow Trainer's TrainJob CRD schema (vendored in deploy/schemas/)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.k8s import trainjob_errors


def test_trainjob_manifest_matches_the_trainjob_schema() -> None:
    from components.config import DistributedConfig
    from components.train.trainjob import job_name, manifest

    spec = DistributedConfig(nodes=4, gpus_per_node=8)
    name = job_name("tabular_wine", "5f1c2a90-8e3b-4b7e-9a51-0c2d7e9b1f00")
    secrets = {"mlflow_secret": "dlpipe-mlflow", "s3_secret": "dlpipe-s3", "optuna_secret": "dlpipe-optuna"}
    env = {"DLPIPE_PIPELINE_RUN": "5f1c2a90"}
    job = manifest(
        name, "kubeflow", "registry.example/dlpipe:gpu", "tabular_wine", Path("/workspace") / name, spec, env, secrets
    )
    assert trainjob_errors(job) == []
    trainer = job["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"], trainer["resourcesPerNode"]) == (
        4, 8, {"limits": {"nvidia.com/gpu": 8}}
    )  # fmt: skip
    assert trainer["command"][:5] == ["torchrun", "--no-python", "dlpipe", "train", "tabular_wine"]
    assert job["spec"]["runtimeRef"]["name"] == "torch-distributed"
    mlflow_uri = next(e for e in trainer["env"] if e["name"] == "MLFLOW_TRACKING_URI")
    assert mlflow_uri["valueFrom"]["secretKeyRef"] == {"name": "dlpipe-mlflow", "key": "uri", "optional": True}
    # the schema is not vacuous: it rejects what the TrainJob CRD would reject
    broken = {**job, "spec": {**job["spec"], "trainer": {**trainer, "numNodes": "4", "gpus": 2}}}
    assert trainjob_errors(broken) == [
        "spec/trainer/numNodes: '4' is not of type 'integer'",
        "spec/trainer: Additional properties are not allowed ('gpus' was unexpected)",
    ]
