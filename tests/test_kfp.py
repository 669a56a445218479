"""Kubeflow runner: the compiled spec is valid offline, and kfp.local reproduces the direct run's metrics."""

from __future__ import annotations

import copy
import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from components.config import ConfigError, stage_config
from pipelines.cli.pipeline import pipeline_app

ROOT = Path(__file__).resolve().parents[1]


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


def test_bad_cluster_settings_fail_at_compile_time(params: dict) -> None:
    from pipelines.build import build_pipeline

    bad = copy.deepcopy(params)
    bad["kubeflow"] = {"tabular": {"train": {"cpu_request": "two"}}}
    with pytest.raises(ConfigError, match=r"kubeflow\.tabular\.train\.cpu_request"):
        build_pipeline("tabular", bad)


def _local_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A fresh engine home for one kfp.local run; returns it and its MLflow URI."""
    home = tmp_path / "home"
    uri = f"sqlite:///{home / 'mlflow.db'}"
    monkeypatch.setenv("DLPIPE_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # mlflow.set_registry_uri() (run by the fixture in this process) exports MLFLOW_REGISTRY_URI, and the
    # step subprocesses would inherit it: registering into the session's registry, not this test's.
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # kfp.local's subprocesses run here, with this folder first on sys.path
    return home, uri


FAST = ("tabular_wine", "tabular_diabetes")  # the untuned tabular tasks: seconds per step


def test_all_pipeline_locally_matches_direct_runs(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Local parity on the fast tasks: the `all` pipeline, narrowed by its `tasks` parameter, gives the numbers
    the step functions give directly (what `dvc repro` runs; bench/kfp_parity.py compares with dvc itself). The
    promotion gate holds back wine's registration (min_score above reach) and lets diabetes become champion."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from tests.conftest import run_task

    direct = {}
    for name in FAST:
        art = run_task(name, tmp_path_factory.mktemp(name))
        direct[name] = json.loads((art.parents[1] / "metrics" / f"{name}.json").read_text())
    home, uri = _local_home(tmp_path, monkeypatch)
    args = ["run", "--local", "--task", "all", *[x for name in FAST for x in ("--only", name)]]
    args += ["-s", "register.tabular_wine.min_score=1.01", "--params", str(ROOT / "params.yaml")]
    result = CliRunner().invoke(pipeline_app, args)
    assert result.exit_code == 0, result.output[-3000:]
    (run_dir,) = home.glob("local_outputs/dlpipe-all-*")
    local = {p.stem: json.loads(p.read_text()) for p in run_dir.glob("evaluate*/metrics/*.json")}
    assert local.keys() == direct.keys()  # the other tasks' branches were skipped
    for name in FAST:
        assert local[name] == pytest.approx(direct[name], abs=1e-6), name
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert client.get_model_version_by_alias("tabular_diabetes", "champion")
    with pytest.raises(MlflowException):
        client.get_registered_model("tabular_wine")
    assert len(list(run_dir.glob("register*"))) == 1


def test_failed_step_marks_the_mlflow_run_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A step fails (ingest, on a dataset that does not exist) before any MLflow run exists: the exit handler still
    runs and records a FAILED run carrying the failure; the CLI ends in one error line."""
    from mlflow import MlflowClient

    home, uri = _local_home(tmp_path, monkeypatch)
    args = ["run", "--local", "--task", "tabular_wine", "-s", "prepare.tabular_wine.dataset=no_such_data"]
    result = CliRunner().invoke(pipeline_app, [*args, "--params", str(ROOT / "params.yaml")])
    assert result.exit_code == 2 and "error: the tabular_wine pipeline failed" in result.output
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("dlpipe-tabular_wine").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["dlpipe.pipeline_error"].startswith("Kubeflow FAILED") and run.data.tags["dlpipe.pipeline_run"]


def test_mark_pipeline_failed_marks_only_that_pipeline_runs_top_level_runs(tmp_path: Path) -> None:
    import mlflow

    from components.core import tracking

    tag = {tracking.PIPELINE_RUN_TAG: "run-a"}
    with (
        mlflow.start_run(experiment_id=tracking.experiment_id("marktest"), tags=tag) as parent,
        mlflow.start_run(nested=True, tags=tag) as trial,
    ):
        pass
    other = mlflow.MlflowClient().create_run(tracking.experiment_id("marktest"), tags={tracking.PIPELINE_RUN_TAG: "b"})
    assert tracking.mark_pipeline_failed("marktest", "run-a", "train: OOMKilled") == [parent.info.run_id]
    client = mlflow.MlflowClient()
    assert client.get_run(parent.info.run_id).info.status == "FAILED"
    assert client.get_run(trial.info.run_id).info.status == "FINISHED"
    assert client.get_run(other.info.run_id).info.status == "RUNNING"


def _one_error_line(args: list[str], starts: str) -> None:
    params = ["--params", str(ROOT / "params.yaml")] if args[0] in ("submit", "schedule") else []
    result = CliRunner().invoke(pipeline_app, [*args, *params])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {starts}"), result.output


def _free_port() -> int:
    with socket.socket() as sock:  # bind then close: a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    "command", [["submit"], ["schedule", "--cron", "0 3 * * *"], ["list"], ["status", "some-run-id"]]
)
def test_operating_an_unreachable_host_fails_in_one_line(command: list[str]) -> None:
    _one_error_line([*command, "--host", f"http://127.0.0.1:{_free_port()}"], "cannot reach Kubeflow Pipelines")


def test_rejected_token_and_bad_input_fail_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Rejects(BaseHTTPRequestHandler):  # an API gateway that refuses the token
        def do_GET(self) -> None:
            self.send_response(401, "Unauthorized")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Rejects)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        _one_error_line(["submit", "--host", host, "--token", "expired"], f"Kubeflow Pipelines at {host} rejected")
        _one_error_line(["list", "--host", host], f"Kubeflow Pipelines at {host} needs a token")
    finally:
        server.shutdown()
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "missing"))
    _one_error_line(["list", "--in-cluster"], "--in-cluster: no service-account token")
    _one_error_line(["submit", "--host", host, "-s", "train.tabular.lr=-1"], "train.tabular.lr: Input should be")
    _one_error_line(["submit", "--host", host, "-s", "train.nosuch.lr=1"], "override 'train.nosuch.lr=1'")
    _one_error_line(["submit", "--host", host, "--task", "nosuch"], "unknown task 'nosuch'")
    _one_error_line(["schedule", "--host", host, "--cron", "daily"], "--cron 'daily'")
    _one_error_line(["list"], "no Kubeflow Pipelines host")


def test_cnn_pipeline_runs_locally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, params: dict) -> None:
    """ingest -> prepare -> augment -> train -> evaluate -> export -> register for the digits CNN, briefly trained."""
    quick = copy.deepcopy(params)
    quick["train"]["digits"] |= {"epochs": 2}
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(quick))
    home = tmp_path / "home"
    monkeypatch.setenv("DLPIPE_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(pipeline_app, ["run", "--local", "--task", "digits", "--params", str(params_file)])
    assert result.exit_code == 0, result.output[-3000:]
    (run_dir,) = home.glob("local_outputs/dlpipe-digits-*")
    assert (run_dir / "augment/policy/augment.json").is_file() and (run_dir / "augment/policy/preview.png").is_file()
    metrics = json.loads((run_dir / "evaluate/metrics/digits.json").read_text())
    assert metrics["accuracy"] > 0.5 and "accuracy/7" in metrics
    assert (run_dir / "evaluate/plots/worst_misclassified.png").is_file()


def test_submit_sends_the_compiled_pipeline_and_the_run_parameters() -> None:
    """Against a stand-in for the KFP REST API (v2beta1): submit --wait creates the experiment, posts the `all`
    spec with its PlatformSpec and the run's parameters, polls the run and reports its final state."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[tuple[str, str, dict]] = []

    class FakeKfp(BaseHTTPRequestHandler):
        def _send(self, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            seen.append(("GET", self.path, {}))
            self._send({"run_id": "r1", "state": "SUCCEEDED"} if self.path.startswith("/apis/v2beta1/runs/") else {})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(("POST", self.path, body))
            self._send({"experiment_id": "e1", "run_id": "r1", "state": "PENDING"})

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKfp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"http://127.0.0.1:{server.server_address[1]}"
    args = ["submit", "--host", host, "--task", "all", "--only", "tabular", "-s", "train.tabular.lr=0.01"]
    try:
        result = CliRunner().invoke(pipeline_app, [*args, "--wait", "--params", str(ROOT / "params.yaml")])
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    assert f"submitted run r1: {host}/#/runs/details/r1" in result.output and "run r1: SUCCEEDED" in result.output
    (run,) = [body for method, path, body in seen if method == "POST" and path == "/apis/v2beta1/runs"]
    assert run["runtime_config"]["parameters"] == {"params_overrides": ["train.tabular.lr=0.01"], "tasks": ["tabular"]}
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "dlpipe-all"
    assert "kubernetes" in run["pipeline_spec"]["platform_spec"]["platforms"]
    assert ("POST", "/apis/v2beta1/experiments", {"display_name": "dlpipe-all", "namespace": ""}) in seen
