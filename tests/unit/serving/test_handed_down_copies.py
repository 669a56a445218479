"""A killed server's handed-down model copies are removed by the next server; a live server's never are."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from serving.bundle import COPIES_PREFIX, remove_orphaned_copies


def _copies(temp: Path, pid: int) -> Path:
    folder = temp / f"{COPIES_PREFIX}{pid}-abc123"
    (folder / "0").mkdir(parents=True)
    (folder / "0" / "model.onnx").write_bytes(b"\0" * 1024)
    return folder


def test_copies_of_a_dead_server_are_removed_and_a_live_ones_kept(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = _copies(tmp_path, int(gone.stdout))  # that process has exited: nothing will remove its copies
    live = _copies(tmp_path, os.getpid())
    parent = _copies(tmp_path, os.getppid())
    unrelated = tmp_path / f"{COPIES_PREFIX}notapid-xyz"
    unrelated.mkdir()
    other = tmp_path / "dlpipe-something-else"
    other.mkdir()

    assert remove_orphaned_copies(tmp_path) == [dead]
    assert not dead.exists()
    assert live.is_dir() and parent.is_dir() and unrelated.is_dir() and other.is_dir()
    assert remove_orphaned_copies(tmp_path) == []  # nothing more to do
