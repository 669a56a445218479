"""atomic_write: flushed to disk before the rename, normal file permissions, nothing half-written. read_checkpoint
and read_json: a file cut short or corrupt, or a checkpoint holding code, is one error naming it."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from components.core import io
from components.core.errors import DataError


def test_atomic_write_fsyncs_before_the_rename_and_keeps_normal_permissions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(f"fsync {os.readlink(f'/proc/self/fd/{fd}')}"),
                                                 fsync(fd))[1])  # fmt: skip
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(f"replace {b}"), replace(a, b))[1])
    old = os.umask(0o022)
    try:
        path = io.write_json(tmp_path / "out" / "result.json", {"ok": 1})
    finally:
        os.umask(old)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)  # not mkstemp's private 0600
    file_synced = next(i for i, e in enumerate(events) if e.startswith("fsync") and ".result.json." in e)
    renamed = events.index(f"replace {path}")
    assert file_synced < renamed  # the bytes are on disk before the name points at them
    assert events[renamed + 1 :] == [f"fsync {path.parent}"]  # and the rename is, too


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = io.write_json(tmp_path / "result.json", {"ok": 1})

    def half(tmp: Path) -> None:
        tmp.write_text('{"ok": ')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        io.atomic_write(path, half)
    assert io.read_json(path) == {"ok": 1} and [p.name for p in tmp_path.iterdir()] == ["result.json"]


class _Runs:
    def __reduce__(self) -> tuple:
        return (os.system, ("echo this ran",))


def test_an_unreadable_checkpoint_is_one_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    torch.save({"best_model": {"w": torch.ones(3)}, "meta": {}, "model_config": {}}, path)
    whole = path.read_bytes()
    assert io.read_checkpoint(path, needs=("best_model", "meta"))["best_model"]["w"].sum() == 3
    for broken, reason in [
        (whole[: len(whole) // 2], "failed finding central directory"),  # a copy cut short
        (b"", "it ends early"),
        (bytes(range(256)) + whole, "not a readable checkpoint"),  # bytes ahead of it
        (pickle.dumps({"best_model": _Runs()}, protocol=2), r"refused, it holds an object .*\(posix.system\)"),
    ]:
        path.write_bytes(broken)
        with pytest.raises(DataError, match=reason) as err:
            io.read_checkpoint(path)
        assert str(path) in str(err.value)
    torch.save({"w": torch.ones(1)}, path)  # a state dict, not a trained model's checkpoint
    with pytest.raises(DataError, match="not a dlpipe checkpoint: it has no meta, best_model"):
        io.read_checkpoint(path, needs=("w", "meta", "best_model"))
    with pytest.raises(FileNotFoundError, match="missing.pt not found"):
        io.read_checkpoint(tmp_path / "missing.pt")


def test_a_corrupt_json_file_is_one_error_naming_it(tmp_path: Path) -> None:
    path = io.write_json(tmp_path / "meta.json", {"task": "tabular", "classes": ["a", "b"]})
    assert io.read_json(path)["classes"] == ["a", "b"]
    for broken in (path.read_bytes()[:-5], b"", b"\xff\xfe{}"):
        path.write_bytes(broken)
        with pytest.raises(DataError, match=f"{path} is not valid JSON"):
            io.read_json(path)
