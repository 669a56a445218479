"""The Kubeflow TrainJob manifest matches Kubeflow Trainer's TrainJob CRD schema (vendored in deploy/schemas/), and a
TrainJob that fails or times out is deleted with its pods."""

from __future__ import annotations

from pathlib import Path

import pytest

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


class FakeTrainJobs:
    """The CustomObjectsApi calls `_run` makes, on TrainJobs kept in memory: each created job reports
    `conditions`; deleting one with foreground propagation deletes its pods too."""

    def __init__(self, conditions: list[dict]) -> None:
        self.conditions, self.jobs, self.pods, self.deleted = conditions, {}, {}, []

    def create_namespaced_custom_object(self, group, version, namespace, plural, body) -> dict:
        name = body["metadata"]["name"]
        self.jobs[name] = body
        self.pods[name] = [f"{name}-node-0-0", f"{name}-node-0-1"]
        return body

    def list_namespaced_custom_object(self, group, version, namespace, plural, label_selector="") -> dict:
        key, _, value = label_selector.partition("=")
        return {"items": [job for job in self.jobs.values() if job["metadata"]["labels"].get(key) == value]}

    def get_namespaced_custom_object(self, group, version, namespace, plural, name) -> dict:
        return {**self.jobs[name], "status": {"conditions": self.conditions}}

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, propagation_policy=None):
        del self.jobs[name]
        if propagation_policy in ("Foreground", "Background"):  # "Orphan" would leave the pods running
            del self.pods[name]
        self.deleted.append(name)


def _body(name: str = "dlpipe-tabular-run1-abc123") -> dict:
    from components.train.trainjob import STEP_LABEL

    return {"metadata": {"name": name, "namespace": "kubeflow", "labels": {STEP_LABEL: name.rsplit("-", 1)[0]}}}


@pytest.mark.parametrize(
    ("conditions", "timeout_s", "message"),
    [
        ([{"type": "Failed", "status": "True", "message": "node-0 OOMKilled"}], 60, "failed: node-0 OOMKilled"),
        ([{"type": "Created", "status": "True"}], 0.05, "did not finish within 0.05 s"),
    ],
)
def test_a_failed_or_timed_out_trainjob_is_deleted_with_its_pods(conditions, timeout_s, message) -> None:
    from components.core.errors import DlpipeError
    from components.train.trainjob import _run

    api = FakeTrainJobs(conditions)
    with pytest.raises(DlpipeError, match=f"{message}.*; deleted with its pods"):
        _run(_body(), timeout_s, api=api, poll_s=0.01)
    assert api.deleted == ["dlpipe-tabular-run1-abc123"] and api.jobs == {} and api.pods == {}


def test_a_completed_trainjob_is_kept_and_a_retry_finds_the_same_workdir() -> None:
    from components.config import DistributedConfig
    from components.train.trainjob import _run, job_name, manifest, workdir_of

    api = FakeTrainJobs([{"type": "Complete", "status": "True"}])
    _run(_body(), 60, api=api, poll_s=0.01)
    assert api.deleted == [] and list(api.jobs) == ["dlpipe-tabular-run1-abc123"]
    first, retry = job_name("tabular", "run-1"), job_name("tabular", "run-1")
    assert first != retry and workdir_of(first) == workdir_of(retry) == Path("/workspace/dlpipe-tabular-run-1")
    job = manifest(
        retry, "kubeflow", "img", "tabular", workdir_of(retry), DistributedConfig(), {}, {"mlflow_secret": "m"}
    )
    assert job["spec"]["trainer"]["command"][-1] == "--resume"  # the retried attempt resumes from the checkpoint


def test_a_retry_deletes_the_trainjob_a_killed_attempt_left_running() -> None:
    """The launching pod was killed outright (no cleanup ran): its TrainJob still trains into the shared folder."""
    from components.train.trainjob import _run

    api = FakeTrainJobs([{"type": "Complete", "status": "True"}])
    api.create_namespaced_custom_object("g", "v", "kubeflow", "trainjobs", _body("dlpipe-tabular-run1-aaaaaa"))
    api.create_namespaced_custom_object("g", "v", "kubeflow", "trainjobs", _body("dlpipe-tabular-run2-bbbbbb"))
    _run(_body("dlpipe-tabular-run1-cccccc"), 60, api=api, poll_s=0.01)
    assert api.deleted == ["dlpipe-tabular-run1-aaaaaa"]  # the other pipeline run's job is left alone
    assert sorted(api.jobs) == ["dlpipe-tabular-run1-cccccc", "dlpipe-tabular-run2-bbbbbb"]
