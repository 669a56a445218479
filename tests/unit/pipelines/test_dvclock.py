"""The faster dvc.lock reader and writer `dlpipe repro`'s lanes install: DVC's updates of dvc.lock write the same
bytes as with its own round trip, and only dvc.lock goes through them."""

from __future__ import annotations

import io
from collections import OrderedDict
from pathlib import Path

import dvc.dvcfile
import pytest
from dvc.utils.serialize._yaml import _dump as dvc_dump
from dvc.utils.serialize._yaml import parse_yaml_for_update

from pipelines import dvclock
from tests.conftest import ROOT

# values a lock can hold that YAML writers disagree on: floats, strings that read as other types, quotes, long,
# multi-line and non-ASCII strings, empty mappings and None
EDGES = OrderedDict(
    cmd="dlpipe train fashion --tuned && python -c 'print(1)' " + "--flag value " * 8,
    deps=[OrderedDict(path="données/ü €.csv", hash="md5", md5="0" * 32 + ".dir", size=12, nfiles=3)],
    params={"params.yaml": {"train.x": {"lr": 1e-06, "big": 1.5e12, "n": 3, "on": "on", "yes": "yes", "v": "1.0",
                                        "null_": None, "empty": "", "nested": {}, "flag": True, "list": [0.1, "a b"],
                                        "colon": "a: b", "hash": "# x", "multi": "line one\nline two"}}},
)  # fmt: skip


def _dvc_writes(data: object) -> str:
    stream = io.StringIO()
    dvc_dump(data, stream)
    return stream.getvalue()


def _ours(data: object) -> str:
    stream = io.StringIO()
    dvclock.dump(data, stream)
    return stream.getvalue()


def test_the_repository_lock_round_trips_byte_for_byte() -> None:
    text = (ROOT / "dvc.lock").read_text(encoding="utf-8")
    assert _dvc_writes(parse_yaml_for_update(text, "dvc.lock")) == text
    assert _ours(dvclock.parse(text, "dvc.lock")) == text
    assert _ours(dvclock.parse(text, "dvc.lock")) == text  # again, from the stages' texts it keeps


def test_a_changed_stage_is_written_again() -> None:
    lock = dvclock.parse((ROOT / "dvc.lock").read_text(encoding="utf-8"), "dvc.lock")
    _ours(lock)
    # three of the repository's stages: each write below is DVC's serializer on the whole lock (0.6 s for all 100)
    lock["stages"] = dict(list(lock["stages"].items())[:3])
    name = next(iter(lock["stages"]))
    for value in (1, 1.0, True, "1", None, "ü"):  # equal in Python (1 == 1.0 == True), not in YAML
        lock["stages"][name]["cmd"] = value
        assert _ours(lock) == _dvc_writes(lock)
    lock["stages"] = dict(reversed(lock["stages"].items()))  # DVC's order is the file's
    assert _ours(lock) == _dvc_writes(lock)


def test_values_dvc_wrote_read_back_and_write_the_same_bytes() -> None:
    text = _dvc_writes({"schema": "2.0", "stages": {"train@x": EDGES}})  # DVC's stage serializer gives OrderedDicts
    assert "données" in text and "null_:\n" in text and '"line one\\nline two"' in text  # DVC's own styles
    read = dvclock.parse(text, "dvc.lock")
    assert read["stages"]["train@x"] == EDGES
    assert _ours(read) == text == _dvc_writes(parse_yaml_for_update(text, "dvc.lock"))
    for other in ({}, {"schema": "2.0"}, {"schema": "2.0", "stages": {}}):  # what DVC writes before any stage
        assert _ours(other) == _dvc_writes(other)


def test_only_dvc_lock_is_written_by_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lock, pipeline = tmp_path / "dvc.lock", tmp_path / "dvc.yaml"
    pipeline.write_text("stages:  # a comment DVC's round trip keeps\n  a:\n    cmd: echo a\n")
    lock.write_text(_dvc_writes({"schema": "2.0", "stages": {}}))
    monkeypatch.setattr(dvc.dvcfile, "modify_yaml", dvc.dvcfile.modify_yaml)  # DVC's own again after the test
    dvclock.install()
    with dvc.dvcfile.modify_yaml(lock) as data:
        data["stages"]["train@x"] = EDGES
    with dvc.dvcfile.modify_yaml(pipeline) as data:
        data["stages"]["b"] = {"cmd": "echo b"}
    assert lock.read_text(encoding="utf-8") == _dvc_writes({"schema": "2.0", "stages": {"train@x": EDGES}})
    assert "# a comment DVC's round trip keeps" in pipeline.read_text()


def test_installs_into_the_dvc_it_runs_with(monkeypatch: pytest.MonkeyPatch) -> None:
    """DVC updates its files through `dvc.dvcfile.modify_yaml`; a DVC that stops doing so fails here, not silently."""
    seen: list[str] = []
    monkeypatch.setattr("dvc.cli.main", lambda argv: seen.extend(argv) or 0)
    monkeypatch.setattr(dvc.dvcfile, "modify_yaml", dvc.dvcfile.modify_yaml)  # restored after the test
    assert dvclock.main(["version"]) == 0 and seen == ["version"]
    assert dvc.dvcfile.modify_yaml.__module__ == "pipelines.dvclock"


def test_the_lanes_worker_runs_each_lane_and_ends_it_with_its_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m pipelines.dvclock --lanes`: one `dvc repro --single-item` per line read, each followed by the
    end-of-lane line `dlpipe repro` waits for; a blank line is no lane."""
    calls: list[list[str]] = []
    monkeypatch.setattr(dvclock, "_dvc", lambda argv: calls.append(argv) or len(calls) - 1)
    assert dvclock.serve_lanes(['["prepare@a", "train@a"]\n', "\n", '["prepare@b"]\n']) == 0
    assert calls == [
        ["--wait-for-lock", "repro", "--single-item", "prepare@a", "train@a"],
        ["--wait-for-lock", "repro", "--single-item", "prepare@b"],
    ]
    assert capsys.readouterr().out.splitlines() == [f"{dvclock.LANE_END} 0", f"{dvclock.LANE_END} 1"]
