"""End to end under DVC: a copy of the repository pulls its data and reproduces the tabular task."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, TABULAR_TUNE

pytestmark = pytest.mark.slow  # about 100 s: a repository copy, `dvc repro` of the tabular task, two `dvc exp run`

BIN = Path(sys.executable).parent


def sh(*cmd: str, cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The working tree's files (tracked and untracked, not ignored) in a new git repository, less dvc.lock: its
    7,200 lines (every task's stages) cost DVC 1-2 s to parse and rewrite after each stage, and this copy reproduces
    only the tabular task's. Its params.yaml tunes the tabular task with the study the session's fixture uses."""
    dst = tmp_path_factory.mktemp("clone") / "repo"
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file() and name != "dvc.lock":
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dst / name)
    params = yaml.safe_load((dst / "params.yaml").read_text())
    params["tune"]["tabular"] |= TABULAR_TUNE
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k not in ("DLPIPE_HOME", "MLFLOW_TRACKING_URI")}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    sh("git", "init", "-q", cwd=dst, env=env)
    return dst, env


def test_data_pull_rebuilds_then_pulls(repo_copy: tuple[Path, dict[str, str]]) -> None:
    repo, env = repo_copy
    assert "rebuilt" in sh("dlpipe", "data", "pull", cwd=repo, env=env)  # the fresh remote is empty
    shutil.rmtree(repo / "data")
    assert "pulled from the DVC remote" in sh("dlpipe", "data", "pull", cwd=repo, env=env)
    assert "up to date" in sh("dvc", "status", "data.dvc", cwd=repo, env=env)


def test_dvc_repro_tabular(repo_copy: tuple[Path, dict[str, str]], tabular_artifacts: Path) -> None:
    repo, env = repo_copy
    if not (repo / "data" / "raw").is_dir():
        sh("dlpipe", "data", "pull", cwd=repo, env=env)
    sh("dvc", "repro", "register@tabular", cwd=repo, env=env)

    metrics = json.loads((repo / "metrics" / "tabular.json").read_text())
    direct = json.loads((tabular_artifacts.parents[1] / "metrics" / "tabular.json").read_text())
    assert metrics == direct  # same functions, same params, same numbers as the in-process run
    assert metrics["accuracy"] >= 0.95
    for name in ("checkpoint.pt", "model.onnx", "export.json", "registration.json", "data/meta.json"):
        assert (repo / "artifacts" / "tabular" / name).is_file(), name
    assert (repo / "plots" / "tabular" / "roc.png").is_file()

    again = sh("dvc", "repro", "register@tabular", cwd=repo, env=env)
    assert "Running stage" not in again  # a second repro is a no-op
    assert "up to date" in sh("dvc", "status", "--with-deps", "register@tabular", cwd=repo, env=env)

    import mlflow

    db = f"sqlite:///{repo / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=db, registry_uri=db)
    champion = client.get_model_version_by_alias("tabular", "champion")
    run = client.get_run(champion.run_id)
    assert run.data.metrics["test_accuracy"] == metrics["accuracy"]
    assert run.data.tags["data_sha256"] and run.data.tags["version.torch"]


def _experiments(shown: list[dict]) -> dict[str, dict]:
    """`dvc exp show --json` -> {experiment name: its data (metrics, params)}, at any depth of the answer."""
    found: dict[str, dict] = {}
    stack: list = [shown]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("name") and isinstance(node.get("data"), dict):
                found[node["name"]] = node["data"]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def test_dvc_experiments_keep_their_metrics_and_name_their_mlflow_runs(repo_copy: tuple[Path, dict[str, str]]) -> None:
    """Two `dvc exp run -S ...` experiments: `dvc exp show` lists each with its params and test metrics, and each
    experiment's MLflow run carries the experiment's name (and the experiment shows the run's id)."""
    repo, env = repo_copy
    if not (repo / "data" / "raw").is_dir():
        sh("dlpipe", "data", "pull", cwd=repo, env=env)
    for key, value in (("user.name", "dlpipe tests"), ("user.email", "tests@dlpipe.invalid")):
        sh("git", "config", key, value, cwd=repo, env=env)
    sh("git", "add", "-A", cwd=repo, env=env)
    sh("git", "commit", "-q", "-m", "baseline", cwd=repo, env=env)
    # no tuning (n_trials=0): train --tuned would otherwise take lr from the study's best point
    for name, lr in (("lr-small", 0.0005), ("lr-large", 0.01)):
        sets = [f"train.tabular.lr={lr}", "train.tabular.epochs=4", "tune.tabular.n_trials=0"]
        sets = [arg for s in sets for arg in ("-S", s)]
        sh("dvc", "exp", "run", "-n", name, *sets, "evaluate@tabular", cwd=repo, env=env)

    shown = _experiments(json.loads(sh("dvc", "exp", "show", "--json", cwd=repo, env=env).splitlines()[-1]))
    import mlflow

    db = f"sqlite:///{repo / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=db, registry_uri=db)
    for name, lr in (("lr-small", 0.0005), ("lr-large", 0.01)):
        data = shown[name]
        assert data["params"]["params.yaml"]["data"]["train"]["tabular"]["lr"] == lr
        metrics = data["metrics"]["metrics/tabular.json"]["data"]
        assert 0.5 < metrics["roc_auc"] <= 1 and 0 < metrics["accuracy"] <= 1
        run_id = data["metrics"]["artifacts/tabular/run.json"]["data"]["run_id"]
        run = client.get_run(run_id)
        assert run.data.tags["dvc.exp_name"] == name
        assert float(run.data.params["lr"]) == lr
    small, large = (shown[n]["metrics"]["metrics/tabular.json"]["data"] for n in ("lr-small", "lr-large"))
    assert small != large  # each experiment kept its own numbers
