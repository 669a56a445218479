"""The Kubeflow train step under retries: an attempt killed mid-training leaves its checkpoint on the PVC, and the
retried attempt resumes from it instead of starting over."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

TRAIN = {"epochs": 4, "checkpoint_interval_s": 0, "model": {"hidden": [8]}, "early_stopping": {"enabled": False}}


def test_a_retried_train_step_resumes_from_the_last_checkpoint(
    tmp_path: Path, tabular_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from components import kubeflow
    from components.core import tracking
    from components.core.io import read_json
    from components.train import step

    (tmp_path / "policy").mkdir()
    (tmp_path / "best").mkdir()
    args = {
        "data": SimpleNamespace(path=str(tabular_data)),
        "policy": SimpleNamespace(path=str(tmp_path / "policy")),
        "best": SimpleNamespace(path=str(tmp_path / "best")),
        "train_config": TRAIN, "overrides": [], "task": "tabular", "mlflow_tracking_uri": "",
        "pipeline_run": "run-1", "gpus": 0, "checkpoint_root": str(tmp_path / "pvc"),
    }  # fmt: skip
    logger = step._epoch_logger

    def preempted_at_epoch_3(mlflow, report):  # the node goes away after epoch 2's checkpoint
        log = logger(mlflow, report)

        def maybe(metrics: dict, epoch: int) -> None:
            if epoch == 3:
                raise SystemExit("node preempted")
            log(metrics, epoch)

        return maybe

    monkeypatch.setattr(step, "_epoch_logger", preempted_at_epoch_3)
    with pytest.raises(SystemExit):
        kubeflow.train.python_func(**args, model=SimpleNamespace(path=str(tmp_path / "attempt-1")))
    first_run = read_json(tmp_path / "pvc" / "run-1" / "tabular" / "run.json")["run_id"]
    monkeypatch.setattr(step, "_epoch_logger", logger)
    kubeflow.train.python_func(**args, model=SimpleNamespace(path=str(tmp_path / "attempt-2")))

    out = tmp_path / "attempt-2"
    assert read_json(out / "train.json")["epochs_run"] == 4
    assert [int(r.split(",")[0]) for r in (out / "history.csv").read_text().splitlines()[1:]] == [1, 2, 3, 4]
    client = tracking.configure().MlflowClient()
    second = client.get_run(read_json(out / "run.json")["run_id"])
    assert second.data.tags["resumed_from"] == first_run
    assert [m.step for m in client.get_metric_history(second.info.run_id, "train_loss")] == [3, 4]  # not 1, 2 again


def test_the_compiled_train_step_is_retried_with_its_checkpoints_on_the_pvc(params: dict, tmp_path: Path) -> None:
    import copy

    from kfp import compiler

    from pipelines.build import build

    with_pvc = copy.deepcopy(params)
    with_pvc.setdefault("kubeflow", {})["tabular"] = {"checkpoint_pvc": "dlpipe-checkpoints"}
    path = tmp_path / "tabular.yaml"
    compiler.Compiler().compile(build("tabular", with_pvc), str(path))
    spec, platform = yaml.safe_load_all(path.read_text())
    train = dict(_tasks(spec))["train"]
    assert train["retryPolicy"]["maxRetryCount"] == params["train"].get("tabular", {}).get("retries", 2)
    assert train["inputs"]["parameters"]["checkpoint_root"]["runtimeValue"]["constant"] == "/checkpoints"
    executor = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    (mount,) = executor["pvcMount"]
    assert mount["mountPath"] == "/checkpoints" and "dlpipe-checkpoints" in str(mount)


def _tasks(spec: dict) -> list[tuple[str, dict]]:
    """Every task of the pipeline and its sub-DAGs, by name."""
    found = []
    for dag in [spec["root"], *spec.get("components", {}).values()]:
        found += list(dag.get("dag", {}).get("tasks", {}).items())
    return found
