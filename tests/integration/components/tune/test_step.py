"""Tuning studies: samplers, pruning, multi-objective, shared storage with workers, MLflow lineage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from PIL import Image

from components.config import TuneConfig
from components.tune.step import setup, tune
from components.tune.study import open_study
from tests.helpers.tuning import SPACE, TRAIN, cfg


def run(tmp_path: Path, data: Path, c: TuneConfig) -> dict:
    return tune(data, tmp_path / "out", tmp_path / "plots", "tabular", c, TRAIN)


@pytest.fixture(scope="module")
def data(tabular_artifacts: Path) -> Path:
    return tabular_artifacts / "data"


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes", "gp"])
def test_each_sampler_completes_a_study(sampler: str, tmp_path: Path, data: Path) -> None:
    summary = run(tmp_path, data, cfg(tmp_path, sampler=sampler, pruner="none"))
    assert summary["n_complete"] == 4 and summary["best_value"] < 0.69  # better than chance on breast cancer
    best = yaml.safe_load((tmp_path / "out" / "best_params.yaml").read_text())
    assert best == summary["best_params"] and "lr" in best
    assert ("momentum" in best) == (best["optimizer"] == "momentum")  # conditional parameter


def test_grid_sampler_walks_the_grid(tmp_path: Path, data: Path) -> None:
    space = {"lr": {"type": "float", "low": 0.01, "high": 0.03, "step": 0.01}, "optimizer": SPACE["optimizer"]}
    summary = run(tmp_path, data, cfg(tmp_path, sampler="grid", pruner="none", n_trials=9, space=space))
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    seen = {(t.params["lr"], t.params["optimizer"]) for t in study.trials}
    assert summary["n_complete"] == 9 and len(seen) == 9


def test_nsga2_gives_a_pareto_front(tmp_path: Path, data: Path) -> None:
    c = cfg(tmp_path, sampler="nsga2", pruner="none", second_objective="n_parameters", n_trials=5)
    summary = run(tmp_path, data, c)
    front = summary["pareto_front"]
    assert front and all(len(p["values"]) == 2 for p in front)
    assert (tmp_path / "plots" / "pareto_front.png").is_file()


def test_median_pruning_stops_bad_trials_and_plots(tmp_path: Path, data: Path) -> None:
    space = {"optimizer": SPACE["optimizer"], "lr": {"type": "float", "low": 1e-5, "high": 0.3, "log": True}}
    c = cfg(tmp_path, n_trials=12, epochs=15, pruner="median", space=space)  # slow learners fall below the median
    summary = run(tmp_path, data, c)
    assert summary["n_pruned"] >= 1 and summary["n_complete"] + summary["n_pruned"] == 12
    for name in ("optimization_history", "intermediate_values", "param_importances", "parallel_coordinate"):
        assert (tmp_path / "plots" / f"{name}.png").is_file(), name


def test_trials_are_nested_mlflow_runs(tmp_path: Path, data: Path) -> None:
    import mlflow

    c, parent = setup("tabular", cfg(tmp_path, n_trials=2, pruner="none"), TRAIN)
    from components.tune.step import finalize, work

    work(data, "tabular", c, TRAIN, parent)
    finalize(tmp_path / "out", tmp_path / "plots", "tabular", c, parent)
    client = mlflow.MlflowClient()
    run = client.get_run(parent)
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    assert len(children) == 2 and "best_value" in run.data.metrics and run.data.params["tune.sampler"] == "tpe"


def test_two_workers_share_the_study(tmp_path: Path, data: Path) -> None:
    summary = run(tmp_path, data, cfg(tmp_path, n_trials=6, workers=2, pruner="none"))
    assert summary["n_complete"] >= 6 and summary["n_failed"] == 0


def test_killed_worker_leaves_no_trial_running(tmp_path: Path, data: Path) -> None:
    """SIGKILL a worker mid-trial: completed trials stay, the stale trial is failed by the next worker."""
    c, parent = setup("tabular", cfg(tmp_path, n_trials=3, epochs=300, heartbeat_s=1, pruner="none"), TRAIN)
    job = json.dumps(
        {"data_dir": str(data), "task": "tabular", "cfg": c.model_dump(), "train": TRAIN, "parent": parent}
    )
    (tmp_path / "tmp").mkdir()  # the killed worker's trial folder stays in its $TMPDIR
    env = os.environ | {"TMPDIR": str(tmp_path / "tmp")}
    proc = subprocess.Popen([sys.executable, "-m", "components.tune.step"], stdin=subprocess.PIPE, text=True, env=env)
    proc.stdin.write(job)
    proc.stdin.close()
    study = open_study(c, "tabular")
    deadline = time.monotonic() + 120
    # Kill once a trial has run an epoch: its heartbeat is recorded by then (Optuna only fails trials that
    # have a heartbeat; on a loaded machine a trial can be RUNNING before its first one).
    while time.monotonic() < deadline and not any(
        t.state.name == "RUNNING" and t.intermediate_values for t in study.get_trials()
    ):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(2.5)  # past the grace period (2 x heartbeat)
    from components.tune.step import work

    work(data, "tabular", c.model_copy(update={"epochs": 3}), TRAIN, parent)
    states = [t.state.name for t in open_study(c, "tabular").get_trials()]
    assert "RUNNING" not in states and states.count("FAIL") == 1 and states.count("COMPLETE") == 3


def test_no_trials_means_no_tuning(tmp_path: Path, data: Path) -> None:
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "optimization_history.png").write_bytes(b"an earlier study's plot")
    summary = run(tmp_path, data, TuneConfig())
    assert summary["n_trials"] == 0 and yaml.safe_load((tmp_path / "out" / "best_params.yaml").read_text()) == {}
    # `dvc plots show` fails on an empty plots folder: a card says tuning is off, and no stale study plot stays
    assert [p.name for p in (tmp_path / "plots").iterdir()] == ["tuning_off.png"]
    assert Image.open(tmp_path / "plots" / "tuning_off.png").size == (420, 60)


def test_missing_data_fails_before_a_study_or_a_run_is_made(tmp_path: Path) -> None:
    """Tuning before `prepare` names the missing step and leaves nothing behind: no study (whose failed trial a
    later run would resume), no MLflow run. (An unreachable storage is named before it: tests/unit/components/core/
    test_secrets.py.)"""
    from mlflow import MlflowClient

    def runs() -> int:  # the study's runs ("tabular-tune") in this session's store
        client = MlflowClient()
        ids = [e.experiment_id for e in client.search_experiments()]
        return len(client.search_runs(ids, "attributes.run_name = 'tabular-tune'", max_results=50_000))

    before = runs()
    with pytest.raises(FileNotFoundError, match="run the prepare step first"):
        run(tmp_path, tmp_path / "not-prepared", cfg(tmp_path))
    assert optuna.get_all_study_names(f"sqlite:///{tmp_path / 'optuna.db'}") == [] and runs() == before
