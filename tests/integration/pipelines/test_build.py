"""Compiled Kubeflow pipelines: the spec is valid offline and carries the cluster settings."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from components.config import stage_config


def _compile(params: dict, path: Path, task: str = "tabular") -> tuple[dict, dict[str, Any]]:
    """Compile a pipeline and parse it strictly (unknown field = error): document 0 into a PipelineSpec, document 1
    into a PlatformSpec whose every executor config is a kfp-kubernetes KubernetesExecutorConfig. Returns the spec
    and the Kubernetes config of each executor."""
    from google.protobuf import json_format
    from kfp import compiler
    from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s
    from kfp.pipeline_spec import pipeline_spec_pb2

    from pipelines.build import build

    compiler.Compiler().compile(build(task, params), str(path))
    spec, platform = yaml.safe_load_all(path.read_text())
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)
    json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec(), ignore_unknown_fields=False)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for config in executors.values():
        json_format.ParseDict(config, k8s.KubernetesExecutorConfig(), ignore_unknown_fields=False)
    return spec, executors


def _steps(spec: dict, dag: dict | None = None) -> dict:
    """A task pipeline's steps (`dag`, default the root): the DAG inside its exit handler."""
    tasks = (dag or spec["root"]["dag"])["tasks"]
    return spec["components"][tasks["exit-handler-1"]["componentRef"]["name"]]["dag"]["tasks"]


def _inside(spec: dict, task: dict) -> dict:
    """The tasks of a control-flow group (condition, loop)."""
    return spec["components"][task["componentRef"]["name"]]["dag"]["tasks"]


def test_compiled_spec_is_valid_and_carries_the_cluster_settings(params: dict, tmp_path: Path) -> None:
    from kfp.components import load_component_from_file

    gpu = copy.deepcopy(params)
    gpu["train"]["tabular"]["gpu"] = True
    gpu["kubeflow"] = {"tabular": {"train": {"cpu_request": "3", "cpu_limit": "6", "memory_request": "5Gi",
                                             "memory_limit": "7Gi"}, "shm_size": "8Gi"}}  # fmt: skip
    for name, cfg in (("cpu", params), ("gpu", gpu)):
        spec, k8s = _compile(cfg, tmp_path / f"{name}.yaml")
        root = spec["root"]["dag"]["tasks"]
        assert set(root) == {"exit-handler-1", "mark-failed"}
        assert root["mark-failed"]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
        assert (
            root["mark-failed"]["inputs"]["parameters"]["status"]["taskFinalStatus"]["producerTask"] == "exit-handler-1"
        )
        steps = _steps(spec)
        (gate,) = [t for n, t in steps.items() if n.startswith("condition-")]  # the promotion `dsl.If`
        assert {n for n in steps if not n.startswith("condition-")} == {
            "ingest", "prepare", "augment", "tune", "train", "evaluate", "export"
        }  # fmt: skip
        assert gate["triggerPolicy"]["condition"] == (
            "inputs.parameter_values['pipelinechannel--evaluate-Output'] == true"
        )
        assert set(_inside(spec, gate)) == {"register"}
        retries = stage_config(params, "train", "tabular").retries
        for step in ("train", "tune"):
            assert steps[step]["retryPolicy"] == {
                "maxRetryCount": retries, "backoffDuration": "30s", "backoffFactor": 2.0, "backoffMaxDuration": "3600s"
            }  # fmt: skip
        assert steps["ingest"]["cachingOptions"] == steps["prepare"]["cachingOptions"] == {"enableCache": True}
        register = _inside(spec, gate)["register"]
        assert register["cachingOptions"] == {} and root["mark-failed"]["cachingOptions"] == {}  # caching off
        parameters = spec["root"]["inputDefinitions"]["parameters"]
        assert parameters["prepare_config"]["defaultValue"] == params["prepare"]["tabular"]
        assert {"params_overrides", "image", "mlflow_tracking_uri", "dvc_remote", "gpu_count", "tune_trials",
                "tune_workers", "node_selector", "tolerations"} <= set(parameters)  # fmt: skip
        containers = {e: x["container"] for e, x in spec["deploymentSpec"]["executors"].items()}
        assert all(c["image"] == "{{$.inputs.parameters['pipelinechannel--image']}}" for c in containers.values())
        train, train_k8s = containers["exec-train"]["resources"], k8s["exec-train"]
        light = containers["exec-export"]["resources"]
        assert (light["resourceCpuRequest"], light["resourceMemoryLimit"]) == ("500m", "4Gi")
        secrets: dict[str, set] = {}
        for secret in train_k8s["secretAsEnv"]:
            secrets.setdefault(secret["secretName"], set()).update(m["envVar"] for m in secret["keyToEnv"])
        assert {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_PASSWORD"} <= secrets["dlpipe-mlflow"]
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"} <= secrets["dlpipe-s3"]
        assert all(s["optional"] for s in train_k8s["secretAsEnv"])
        assert "OPTUNA_STORAGE" in str(k8s["exec-tune"]["secretAsEnv"]) and "OPTUNA" not in str(k8s["exec-train"])
        assert train_k8s["nodeSelector"] == {
            "nodeSelectorJson": {"componentInputParameter": "pipelinechannel--node_selector"}
        }
        assert train_k8s["tolerations"] == [
            {"tolerationJson": {"componentInputParameter": "pipelinechannel--tolerations"}}
        ]
        assert "nodeSelector" not in k8s["exec-export"] and "emptyDirMounts" not in k8s["exec-export"]
        shm = train_k8s["emptyDirMounts"][0]
        assert (shm["mountPath"], shm["medium"]) == ("/dev/shm", "Memory")
        if name == "gpu":
            assert (train["resourceCpuRequest"], train["resourceMemoryLimit"], shm["sizeLimit"]) == ("3", "7Gi", "8Gi")
            assert train["accelerator"]["resourceType"] == "nvidia.com/gpu"
            assert train["accelerator"]["resourceCount"] == "{{$.inputs.parameters['pipelinechannel--gpu_count']}}"
            assert spec["root"]["inputDefinitions"]["parameters"]["gpu_count"]["defaultValue"] == 1
            assert containers["exec-tune"]["resources"]["accelerator"]["resourceCount"] == "1"
            # the channel reaches the exit handler's DAG (KFP only passes it down when a step takes it as input)
            handler = spec["components"][root["exit-handler-1"]["componentRef"]["name"]]
            assert "pipelinechannel--gpu_count" in handler["inputDefinitions"]["parameters"]
        else:
            assert (train["resourceCpuRequest"], train["resourceMemoryLimit"], shm["sizeLimit"]) == ("2", "16Gi", "2Gi")
            assert "accelerator" not in train
        assert load_component_from_file(str(tmp_path / f"{name}.yaml")).name == "dlpipe-tabular"


def test_every_task_compiles_and_all_runs_them_in_parallel_branches(params: dict, tmp_path: Path) -> None:
    """Any task in params.yaml gets a pipeline with no new code; `all` gates each on the `tasks` parameter."""
    from components.config import tasks

    spec, _ = _compile(params, tmp_path / "all.yaml", "all")
    names = tasks(params)
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["tasks"]["defaultValue"] == names
    root = spec["root"]["dag"]["tasks"]
    branches = {n: t for n, t in root.items() if n.startswith("condition-")}
    assert len(branches) == len(names) and sum(n.startswith("select") for n in root) == len(names)
    for branch in branches.values():  # no branch waits for another: they run in parallel
        assert branch["dependentTasks"] == [branch["triggerPolicy"]["condition"].split("--")[1].split("-Output")[0]]
    nested = [c for c in spec["components"] if c.startswith("comp-dlpipe-")]
    assert sorted(nested) == sorted(f"comp-dlpipe-{n.replace('_', '-')}" for n in names)
    for name in names:
        steps = _steps(spec, spec["components"][f"comp-dlpipe-{name.replace('_', '-')}"]["dag"])
        assert {"ingest", "prepare", "augment", "train", "evaluate", "export"} <= set(steps)


def test_tuning_workers_fan_out_with_parallel_for(params: dict, tmp_path: Path) -> None:
    fan = copy.deepcopy(params)
    fan["tune"]["tabular"]["workers"] = 3
    fan["train"]["tabular"]["gpu"] = True
    spec, k8s = _compile(fan, tmp_path / "fan.yaml")
    steps = _steps(spec)
    loop = next(t for n, t in steps.items() if n.startswith("for-loop"))
    assert {"tune-setup", "tune-finalize"} <= set(steps) and "tune" not in steps
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--tune-setup-Output"
    worker = spec["deploymentSpec"]["executors"]["exec-tune-worker"]["container"]
    assert worker["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert "OPTUNA_STORAGE" in str(k8s["exec-tune-worker"]["secretAsEnv"])
    assert set(_inside(spec, loop)) == {"tune-worker"}
    assert any(n.startswith("for-loop") for n in steps["tune-finalize"]["dependentTasks"])


def test_distributed_train_step_compiles_to_a_trainjob_launcher(params: dict, tmp_path: Path) -> None:
    import copy

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
