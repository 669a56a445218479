"""MLflow tracking helpers on the embedded store: a fresh store opened by several processes at once, a new store
copied from the migrated template, marking a failed pipeline's top-level runs."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]

# Each process imports MLflow, then waits until all are ready, so that they open the new store together.
OPEN_TOGETHER = r"""
import sys, time
from pathlib import Path
import mlflow
from components.core import tracking
ready, n = Path(sys.argv[1]), int(sys.argv[2])
(ready / sys.argv[3]).touch()
while len(list(ready.iterdir())) < n:
    time.sleep(0.01)
print(tracking.experiment_id(f"lane{sys.argv[3]}"))
"""


def test_processes_opening_a_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    """Two `dlpipe repro` lanes start their first MLflow stages together on a fresh home: MLflow alone runs its
    migrations twice and one process fails with "table ... already exists"."""
    ready, n = tmp_path / "ready", 3
    ready.mkdir()
    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # no template yet: one process migrates, as on a new machine
    args = [sys.executable, "-c", OPEN_TOGETHER, str(ready), str(n)]
    procs = [
        subprocess.Popen([*args, str(i)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(n)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * n, [err[-600:] for _, err in outs]
    assert len({out.strip() for out, _ in outs}) == n  # three experiments, one store
    assert list((tmp_path / "cache" / "dlpipe").glob("mlflow-*-store.db"))  # and the template is kept


def test_a_new_store_is_the_templates_copy_with_its_own_default_experiment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first new store is migrated by MLflow and kept, less its Default experiment, as the template; the next
    new store is that file's copy (no migration) and gets a Default experiment of its own, in its own folder."""
    import mlflow
    import mlflow.store.db.utils

    from components.core import tracking

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    open_store = tracking._open_sqlite_store.__wrapped__  # the cached function, called afresh
    open_store(f"sqlite:///{tmp_path / 'first' / 'mlflow.db'}")
    template = tracking._store_template()
    with sqlite3.connect(template) as conn:
        assert conn.execute("SELECT count(*) FROM experiments").fetchone() == (0,)

    def migrate(engine: object) -> None:
        raise AssertionError("a new store was migrated although the template exists")

    monkeypatch.setattr(mlflow.store.db.utils, "_initialize_tables", migrate)
    (tmp_path / "second").mkdir()
    monkeypatch.chdir(tmp_path / "second")  # MLflow's default artifact root: ./mlruns
    uri = f"sqlite:///{tmp_path / 'second' / 'mlflow.db'}"
    open_store(uri)
    client = mlflow.MlflowClient(uri)
    default = client.get_experiment("0")
    assert default.name == "Default" and default.artifact_location == str(tmp_path / "second" / "mlruns" / "0")
    run = client.create_run(client.create_experiment("after-the-copy"))
    client.log_metric(run.info.run_id, "loss", 0.5)
    assert client.get_run(run.info.run_id).data.metrics == {"loss": 0.5}


def test_a_store_where_no_lock_can_be_taken_still_opens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store in a folder this process may only read (a mounted registry): the lock file cannot be made there."""
    import filelock
    import mlflow

    from components.core import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.MlflowClient(uri).create_experiment("kept")

    class ReadOnly(filelock.FileLock):
        def acquire(self, *args: object, **kwargs: object) -> None:
            raise PermissionError(13, "Permission denied", self.lock_file)

    monkeypatch.setattr(filelock, "FileLock", ReadOnly)
    tracking._open_sqlite_store.__wrapped__(uri)  # the cached function, called afresh
    assert not (tmp_path / "mlflow.db.lock").exists()


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


def test_a_user_without_a_home_folder_opens_a_new_store_without_a_template(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user with no $HOME and no passwd entry (MLflow, once imported, works without one) has no cache folder: the
    store is migrated as MLflow does, and no `~` folder appears in the working directory."""
    import pwd

    import mlflow  # noqa: F401  (its import itself asks for the home folder)

    from components.core import tracking

    def no_entry(uid: int) -> None:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    for name in ("HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    monkeypatch.chdir(tmp_path)
    assert tracking._store_template() is None
    tracking._open_sqlite_store.__wrapped__(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    assert (tmp_path / "store" / "mlflow.db").is_file() and not (tmp_path / "~").exists()
