"""DVC faults lose nothing: a corrupt object in the remote is caught, a failed pull is reported (not papered over
by a rebuild and a push), and a snapshot keeps the user's own datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from components.data import datastore
from components.data.datastore import DataVersionError, dvc, pull, snapshot

CSV = "f,target\n1,a\n2,b\n"


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DVC project (no git) whose data/ holds one user dataset, pushed to a local-folder remote beside it."""
    base = tmp_path_factory.mktemp("dvc")
    root = base / "project"
    (root / "data" / "raw" / "mine").mkdir(parents=True)
    (root / "data" / "raw" / "mine" / "data.csv").write_text(CSV)
    dvc("init", "--no-scm", "--quiet", cwd=root)
    dvc("remote", "add", "--default", "local", "../remote", cwd=root)
    dvc("add", "--quiet", "data", cwd=root)
    dvc("push", "--quiet", "data.dvc", cwd=root)
    return base


@pytest.fixture
def repo(pushed: Path, tmp_path: Path) -> Path:
    """A copy of the pushed project and its remote, for one test to break."""
    import shutil

    shutil.copytree(pushed, tmp_path, dirs_exist_ok=True)
    return tmp_path / "project"


def _fresh_clone(root: Path) -> None:
    """What another machine has before a pull: data.dvc, no data, no cache."""
    import shutil

    shutil.rmtree(root / "data")
    shutil.rmtree(root / ".dvc" / "cache")


def _rebuilds(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record rebuilds (each writes the dataset's original bytes) instead of building every built-in dataset."""
    calls: list[Path] = []

    def rebuild(root: Path) -> list[Path]:
        calls.append(root)
        (root / "data" / "raw" / "mine").mkdir(parents=True, exist_ok=True)
        (root / "data" / "raw" / "mine" / "data.csv").write_text(CSV)
        return [root / "data" / "raw" / "mine"]

    monkeypatch.setattr(datastore, "rebuild", rebuild)
    return calls


def test_a_corrupt_object_in_the_remote_is_detected_and_not_used(repo: Path, tmp_path: Path) -> None:
    md5 = next(e["md5"] for e in _listing(repo) if e["relpath"] == "raw/mine/data.csv")
    obj = tmp_path / "remote" / "files" / "md5" / md5[:2] / md5[2:]
    obj.chmod(0o644)
    obj.write_text("f,target\n1,a\n2,EVIL\n")  # bit rot, or a tampered bucket
    _fresh_clone(repo)
    with pytest.raises(DataVersionError, match=r"do not match their md5 in data\.dvc \(first: raw/mine/data\.csv\)"):
        pull(repo)
    assert not (repo / "data" / "raw" / "mine" / "data.csv").exists()  # nobody trains on it


def test_a_failed_pull_is_reported_not_rebuilt_and_pushed(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rebuilds = _rebuilds(monkeypatch)
    dvc("remote", "add", "--default", "bucket", "http://127.0.0.1:9/dlpipe", cwd=repo)  # unreachable
    _fresh_clone(repo)
    with pytest.raises(DataVersionError, match=r"`dvc pull data\.dvc` failed; nothing was rebuilt or pushed"):
        pull(repo)
    assert rebuilds == [] and not (repo / "data").exists()


def test_a_local_remote_without_the_snapshot_gets_it_rebuilt_and_pushed(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rebuilds = _rebuilds(monkeypatch)
    dvc("remote", "add", "--default", "fresh", str(tmp_path / "fresh-remote"), cwd=repo)  # a fresh clone's default
    _fresh_clone(repo)
    assert pull(repo) == "rebuilt" and rebuilds == [repo]
    assert (tmp_path / "fresh-remote" / "files" / "md5").is_dir()  # pushed


def test_a_rebuild_that_does_not_hash_to_data_dvc_is_refused_and_not_recorded(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh clone (empty cache) whose sources now give other bytes (another library or Python version): DVC's own
    status calls that "not in cache", so the check hashes the rebuilt data itself; data.dvc keeps its record."""

    def rebuild(root: Path) -> list[Path]:
        (root / "data" / "raw" / "mine").mkdir(parents=True, exist_ok=True)
        (root / "data" / "raw" / "mine" / "data.csv").write_text(CSV + "3,c\n")
        return [root / "data" / "raw" / "mine"]

    monkeypatch.setattr(datastore, "rebuild", rebuild)
    dvc("remote", "add", "--default", "fresh", str(tmp_path / "fresh-remote"), cwd=repo)
    recorded = (repo / "data.dvc").read_text()
    _fresh_clone(repo)
    with pytest.raises(DataVersionError, match=r"does not hash to data\.dvc"):
        pull(repo)
    assert (repo / "data.dvc").read_text() == recorded
    assert not (tmp_path / "fresh-remote").exists()  # nothing pushed


def test_snapshot_keeps_the_users_own_datasets(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def rebuild(root: Path) -> list[Path]:  # one small built-in instead of all of them
        (root / "data" / "raw" / "co2").mkdir(parents=True, exist_ok=True)
        (root / "data" / "raw" / "co2" / "data.csv").write_text("date,value\n2000-01-01,370.1\n")
        return [root / "data" / "raw" / "co2"]

    monkeypatch.setattr(datastore, "rebuild", rebuild)
    snapshot(repo)
    assert (repo / "data" / "raw" / "mine" / "data.csv").read_text() == CSV
    assert {e["relpath"] for e in _listing(repo)} == {"raw/mine/data.csv", "raw/co2/data.csv"}


def _listing(root: Path) -> list[dict]:
    md5 = yaml.safe_load((root / "data.dvc").read_text())["outs"][0]["md5"]
    return json.loads((root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).read_text())


def test_dvc_commands_send_no_usage_analytics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A project `dvc init` has just made (as Kubeflow's ingest makes one) reports usage by default: each command
    would write a report into $TMPDIR and fork a daemon to post it. dlpipe's DVC commands do neither."""
    monkeypatch.delenv("DVC_NO_ANALYTICS", raising=False)
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(system_tmp))
    (tmp_path / "project").mkdir()
    dvc("init", "--no-scm", "--quiet", cwd=tmp_path / "project")
    dvc("status", cwd=tmp_path / "project")
    assert list(system_tmp.iterdir()) == []
