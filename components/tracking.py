"""MLflow set-up: embedded SQLite by default, any server through MLFLOW_TRACKING_URI.

One MLflow run per task per pipeline execution: train opens it and records its id in run.json;
evaluate, export and register reopen that same run, under DVC and Kubeflow alike.
"""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager, suppress
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from components.io import read_json, write_json

PACKAGES = ("torch", "mlflow", "onnx", "onnxruntime-gpu", "kfp", "dvc", "optuna", "bentoml", "scikit-learn")


def home() -> Path:
    """Where the embedded engines keep their files: $DLPIPE_HOME, else the working directory."""
    return Path(os.environ.get("DLPIPE_HOME", ".")).resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home() / 'mlflow.db'}"


def _is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def configure() -> Any:
    """Point MLflow at the tracking URI; return the mlflow module."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)  # the registry follows it unless MLFLOW_REGISTRY_URI says otherwise
    return mlflow


def experiment_id(task: str) -> str:
    """Get or create experiment `dlpipe-<task>`; a local store keeps artifacts in $DLPIPE_HOME/mlruns."""
    mlflow = configure()
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or f"dlpipe-{task}"
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = (home() / "mlruns").as_uri() if _is_local(tracking_uri()) else None
    return mlflow.create_experiment(name, artifact_location=location)


def provenance() -> dict[str, str]:
    """Tags that say what produced a run: git commit and the versions of the engines."""
    tags = {"git_commit": _git_commit()}
    for pkg in PACKAGES:
        with suppress(PackageNotFoundError):
            tags[f"version.{pkg}"] = version(pkg)
    return tags


def _git_commit() -> str:
    if os.environ.get("DLPIPE_GIT_COMMIT"):
        return os.environ["DLPIPE_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def start_task_run(
    task: str, out_dir: Path, run_name: str, system_metrics: bool = False, parent_run_id: str | None = None
) -> Any:
    """Start the task's MLflow run and record its id in `out_dir/run.json` for the later steps.

    `system_metrics` samples CPU, memory (and GPU, when present) in the background during the run."""
    mlflow = configure()
    run = mlflow.start_run(
        experiment_id=experiment_id(task),
        run_name=run_name,
        tags=provenance(),
        log_system_metrics=system_metrics,
        parent_run_id=parent_run_id,
        nested=parent_run_id is not None and mlflow.active_run() is not None,  # the study's run, in-process
    )
    write_json(Path(out_dir) / "run.json", {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id})
    return run


@contextmanager
def resume_task_run(model_dir: Path):
    """Reopen the run that train started (its id is in `model_dir/run.json`)."""
    mlflow = configure()
    run_id = read_json(Path(model_dir) / "run.json")["run_id"]
    with mlflow.start_run(run_id=run_id) as run:
        yield run
