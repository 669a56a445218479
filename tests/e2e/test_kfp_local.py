"""Kubeflow pipelines run locally with kfp.local: parity with the direct runs, failures recorded, CNN and seq2seq."""

from __future__ import annotations

import copy
import json
import multiprocessing.util
import os
import tempfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipelines.cli.pipeline import pipeline_app
from tests.conftest import PARAMS, ROOT

pytestmark = pytest.mark.slow  # about 65 s: four kfp.local pipeline runs (each step forked from a warm process)


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
    runs and records a FAILED run carrying the failure; the CLI ends in one error line. The steps' temporary
    folders (kfp writes each step's source into `mktemp -d`) go with the run: the system's temp folder keeps none."""
    from mlflow import MlflowClient

    home, uri = _local_home(tmp_path, monkeypatch)
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    # multiprocessing's folder (the step forkserver's socket) is made once per process, removed at its exit: made
    # before the patch, as in a process that ran steps before
    multiprocessing.util.get_temp_dir()
    monkeypatch.setenv("TMPDIR", str(system_tmp))  # the step subprocesses' temp folder, unless the run sets its own
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))  # and this process's
    args = ["run", "--local", "--task", "tabular_wine", "-s", "prepare.tabular_wine.dataset=no_such_data"]
    result = CliRunner().invoke(pipeline_app, [*args, "--params", str(ROOT / "params.yaml")])
    assert result.exit_code == 2 and "error: the tabular_wine pipeline failed" in result.output
    assert list(system_tmp.iterdir()) == [] and os.environ["TMPDIR"] == str(system_tmp)
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("dlpipe-tabular_wine").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["dlpipe.pipeline_error"].startswith("Kubeflow FAILED") and run.data.tags["dlpipe.pipeline_run"]


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


def test_seq2seq_pipeline_runs_locally_and_compiles_the_encoder_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cross-attention task through Kubeflow's generic pipeline under kfp.local, briefly trained; the
    encoder_mlm pipeline compiles with the fine-tuning step after it."""
    import copy

    import yaml
    from kfp import compiler
    from typer.testing import CliRunner

    from pipelines.build import build
    from pipelines.cli.pipeline import pipeline_app

    quick = copy.deepcopy(PARAMS)
    quick["train"]["seq2seq"] |= {"epochs": 1, "steps_per_epoch": 20}
    compiler.Compiler().compile(build("encoder_mlm", quick), str(tmp_path / "encoder_mlm.yaml"))
    assert "encoder-finetune" in (tmp_path / "encoder_mlm.yaml").read_text()
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(quick))
    home = tmp_path / "home"
    monkeypatch.setenv("DLPIPE_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(pipeline_app, ["run", "--local", "--task", "seq2seq", "--params", str(params_file)])
    assert result.exit_code == 0, result.output[-3000:]
    (run_dir,) = home.glob("local_outputs/dlpipe-seq2seq-*")
    metrics = json.loads((run_dir / "evaluate/metrics/seq2seq.json").read_text())
    assert {"exact_match", "loss", "perplexity"} <= set(metrics)
    assert (run_dir / "export/onnx/graphs/attention.onnx").is_file()
