"""MLflow set-up: embedded SQLite by default, any server through MLFLOW_TRACKING_URI.

One MLflow run per task per pipeline execution: train opens it and records its id in run.json;
evaluate, export and register reopen that same run, under DVC and Kubeflow alike.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from contextlib import ExitStack, closing, contextmanager, suppress
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from components.core.io import atomic_write, read_json, write_json
from components.core.memory import skip_final_collection
from components.core.secrets import mask, mask_logs, mask_tracebacks

PIPELINE_RUN_TAG = "dlpipe.pipeline_run"  # the Kubeflow run that produced an MLflow run (env DLPIPE_PIPELINE_RUN)
DVC_TAGS = {"DVC_EXP_NAME": "dvc.exp_name", "DVC_EXP_BASELINE_REV": "dvc.exp_baseline_rev"}
PACKAGES = (
    "torch",
    "mlflow",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "kfp",
    "dvc",
    "optuna",
    "bentoml",
    "scikit-learn",
)


def home() -> Path:
    """Where the embedded engines keep their files: $DLPIPE_HOME, else the working directory."""
    return Path(os.environ.get("DLPIPE_HOME", ".")).resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home() / 'mlflow.db'}"


def for_pipeline_step(mlflow_tracking_uri: str, pipeline_run: str = "") -> None:
    """A Kubeflow step's tracking: the run's MLflow URI (empty = the pod's $MLFLOW_TRACKING_URI, e.g. from a
    Secret) and the pipeline run's id, tagged on every MLflow run so the exit handler can find them. The step's
    log lines and an error's traceback are masked (components/core/secrets.py); its exit skips the final garbage
    collection, as a `dlpipe` command's does (components/core/memory.py)."""
    skip_final_collection()
    mask_logs()
    mask_tracebacks()
    if mlflow_tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = mlflow_tracking_uri
    if pipeline_run:
        os.environ["DLPIPE_PIPELINE_RUN"] = pipeline_run


def _is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def configure() -> Any:
    """Point MLflow at the tracking URI; return the mlflow module."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    mask_logs()  # MLflow's own handlers print the tracking URI

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)  # the registry follows it unless MLFLOW_REGISTRY_URI says otherwise
    if uri.startswith("sqlite:///"):
        _open_sqlite_store(uri)
    # Over HTTP every logging call is a round trip: queue them (flushed when the run ends).
    mlflow.config.enable_async_logging(not _is_local(uri))
    return mlflow


@cache
def _open_sqlite_store(uri: str) -> None:
    """Open the SQLite store once per process, one process at a time. MLflow creates a new database's tables
    (its migrations) on first use without a lock: two processes starting on a fresh home at once, as two lanes of
    `dlpipe repro` do, both create them and one fails with "table ... already exists". MLflow keeps the opened
    store for the process's later calls. In a read-only folder (a store mounted to be read) no lock can be taken, and
    no process creates tables there either: it is opened without one.

    A new store starts as a copy of this MLflow version's empty store (`_store_template`): MLflow builds one by
    running its schema migrations one by one, 1.4 s of CPU per new home (a kfp.local run, a test's home), against
    milliseconds for the copy. The first new store of a version is built by MLflow and saved as the template."""
    from filelock import FileLock
    from mlflow import MlflowClient

    db = Path(uri.removeprefix("sqlite:///"))
    with ExitStack() as held:
        with suppress(OSError):  # the read-only folder
            db.parent.mkdir(parents=True, exist_ok=True)
            held.enter_context(FileLock(f"{db}.lock"))
        template = _store_template()
        new = not db.exists()
        if new and template and template.is_file():
            with suppress(OSError):
                atomic_write(db, lambda tmp: shutil.copyfile(template, tmp))
        MlflowClient(uri).search_experiments(max_results=1)  # on a copy, MLflow adds its Default experiment
        if new and template and not template.is_file():
            with suppress(OSError, sqlite3.Error):  # no cache folder to write: the next new store migrates too
                _save_template(db, template)


def _store_template() -> Path | None:
    """This MLflow version's empty SQLite store, in the user's cache folder ($XDG_CACHE_HOME, else ~/.cache); None
    for a user without a home folder (a container's user with no $HOME and no passwd entry): no template then."""
    from mlflow.version import VERSION

    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser(os.path.join("~", ".cache"))
    if not os.path.isabs(cache_home):
        return None
    return Path(cache_home) / "dlpipe" / f"mlflow-{VERSION}-store.db"


def _save_template(db: Path, template: Path) -> None:
    """`db`, just created by MLflow, as the template: its migrated tables without the Default experiment, whose
    artifact location is the creating process's (MLflow adds it, with the opener's location, to any copy)."""

    def write(tmp: Path) -> None:
        shutil.copyfile(db, tmp)
        with closing(sqlite3.connect(tmp)) as conn, conn:
            conn.execute("DELETE FROM experiments")

    atomic_write(template, write)  # readers see the whole file or none


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
    if os.environ.get("DLPIPE_PIPELINE_RUN"):
        tags[PIPELINE_RUN_TAG] = os.environ["DLPIPE_PIPELINE_RUN"]
    for env, tag in DVC_TAGS.items():  # `dvc exp run` names the experiment it runs the stages for
        if os.environ.get(env):
            tags[tag] = os.environ[env]
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


def mark_pipeline_failed(task: str, pipeline_run: str, message: str) -> list[str]:
    """Mark the task's MLflow runs of one pipeline run FAILED (a pod killed for memory leaves its run RUNNING,
    and a run that finished before a later step failed looks successful). With no run yet (an early step
    failed), record one FAILED run so the failure shows in MLflow. Returns the run ids marked."""
    mlflow = configure()
    client = mlflow.MlflowClient()
    exp = experiment_id(task)
    found = client.search_runs([exp], filter_string=f"tags.`{PIPELINE_RUN_TAG}` = '{pipeline_run}'")
    ids = [run.info.run_id for run in found if "mlflow.parentRunId" not in run.data.tags]  # not tuning trials
    if not ids:
        run = client.create_run(exp, run_name=f"{task}-pipeline", tags={**provenance(), PIPELINE_RUN_TAG: pipeline_run})
        ids = [run.info.run_id]
    for run_id in ids:
        client.set_tag(run_id, "dlpipe.pipeline_error", mask(message)[:5000])
        client.set_terminated(run_id, status="FAILED")
    return ids
