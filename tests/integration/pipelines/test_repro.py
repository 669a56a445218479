"""`dlpipe repro` on a small real DVC repository: independent lanes run side by side, dvc.lock ends as a plain
`dvc repro` leaves it, and a failing lane stops the others without losing what finished."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.repro import ReproError, lanes, reproduce

BIN = Path(sys.executable).parent
# each stage appends "<name> start <t>" / "<name> end <t>" to its own log, sleeps, writes its output
STAGE = "import sys, time; n, s = sys.argv[1], float(sys.argv[2]); log = open(f'log/{n}', 'a'); " \
        "print(n, 'start', time.time(), file=log, flush=True); time.sleep(s); " \
        "print(n, 'end', time.time(), file=log, flush=True); open(f'out/{n}', 'w').write(n)"  # fmt: skip


def _stage(name: str, seconds: float, deps: list[str]) -> dict:
    return {"cmd": f'python -c "{STAGE}" {name} {seconds}', "deps": ["stage.py", *deps], "outs": [f"out/{name}"]}


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:  # the test runs elsewhere: lanes run in `root`
    """Two independent chains a1 -> a2 and b1 -> b2 -> b3 whose first stages read the same DVC-tracked data
    (raw.txt.dvc, as every task reads data.dvc's data/raw), and a lone stage d."""
    stages = {
        "a1": _stage("a1", 3, ["raw.txt"]),
        "a2": _stage("a2", 0.5, ["out/a1"]),
        "b1": _stage("b1", 3, ["raw.txt"]),
        "b2": _stage("b2", 0.2, ["out/b1"]),
        "b3": _stage("b3", 0.2, ["out/b2"]),
        "d": _stage("d", 0.2, []),
    }
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    (tmp_path / "stage.py").write_text("# the stages' code, as a dependency\n")
    (tmp_path / "raw.txt").write_text("raw data\n")
    (tmp_path / "log").mkdir()
    (tmp_path / "out").mkdir()
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")  # a new DVC project reports usage: not from tests
    for cmd in ("git init -q", "dvc init -q", "dvc add -q raw.txt"):
        subprocess.run(cmd.split(), cwd=tmp_path, check=True, capture_output=True)
    return tmp_path


def _spans(repo: Path) -> dict[str, tuple[float, float]]:
    spans = {}
    for log in (repo / "log").iterdir():
        marks = dict((kind, float(t)) for _, kind, t in (line.split() for line in log.read_text().splitlines()))
        spans[log.name] = (marks["start"], marks.get("end", float("inf")))
    return spans


def test_lanes_are_the_independent_parts_longest_first(repo: Path) -> None:
    found = lanes(repo)  # the data source raw.txt.dvc joins no lanes and is in none
    expected = [("b3", ["b1", "b2", "b3"]), ("a2", ["a1", "a2"]), ("d", ["d"])]
    assert [(lane.name, lane.stages) for lane in found] == expected


def test_lanes_run_side_by_side_a_free_worker_takes_the_next_and_dvc_lock_ends_complete(repo: Path) -> None:
    """The last run's times say b's lane is the long one, but this time a's is (a1 sleeps 8 s, b's stages 0.2 s):
    the worker that ran b takes d next while a1 still runs on the other (groups fixed by those times ran d after
    a). dvc.lock ends as a plain `dvc repro` leaves it."""
    spec = yaml.safe_load((repo / "dvc.yaml").read_text())
    spec["stages"]["b1"]["cmd"] = spec["stages"]["b1"]["cmd"].replace(" b1 3", " b1 0.2")
    spec["stages"]["a1"]["cmd"] = spec["stages"]["a1"]["cmd"].replace(" a1 3", " a1 8")  # b's lane: 3 DVC stages
    (repo / "dvc.yaml").write_text(yaml.safe_dump(spec))
    (repo / "build").mkdir()
    recorded = {"a1": 1.0, "a2": 1.0, "b1": 30.0, "b2": 30.0, "b3": 30.0, "d": 1.0}
    (repo / "build" / "stage_times.json").write_text(json.dumps({"stages": recorded}))

    said: list[str] = []
    report = reproduce(2, repo / "build", repo, say=said.append)

    spans = _spans(repo)
    assert set(spans) == {"a1", "a2", "b1", "b2", "b3", "d"}
    assert spans["a1"][1] <= spans["a2"][0] and spans["b2"][1] <= spans["b3"][0]  # order kept inside a lane
    assert spans["b3"][1] <= spans["d"][0] < spans["a1"][1], spans  # d after b's lane, inside a1's 8 s: side by side
    assert said.index("[d] d") > said.index("[b3] b3")
    assert set(report["stages"]) == set(spans) and all(t > 0 for t in report["stages"].values())
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(spans)
    status = subprocess.run(["dvc", "status"], cwd=repo, capture_output=True, text=True, check=True).stdout
    assert "up to date" in status, status
    saved = json.loads((repo / "build" / "stage_times.json").read_text())
    assert saved["jobs"] == 2 and saved["stages"] == report["stages"]
    for when in ("speed_before", "speed_after"):  # the cores' speed, to tell a slow hour from a slow stage
        assert all(g > 0 for g in saved["machine"][when]["per_core_gflops"]), saved["machine"]


def test_a_failing_lane_stops_the_others_and_keeps_what_finished(repo: Path) -> None:
    spec = yaml.safe_load((repo / "dvc.yaml").read_text())
    # a2 fails once b2 is running (b2 would take 30 s)
    wait_b2 = "import os, time; [time.sleep(0.1) for _ in range(300) if not os.path.exists('log/b2')]"
    spec["stages"]["a2"]["cmd"] = f"python -c \"{wait_b2}; raise SystemExit('a2 breaks')\""
    spec["stages"]["b2"]["cmd"] = spec["stages"]["b2"]["cmd"].replace(" b2 0.2", " b2 30")  # still running then
    (repo / "dvc.yaml").write_text(yaml.safe_dump(spec))

    with pytest.raises(ReproError, match="lane 'a2' failed") as err:
        reproduce(2, repo / "build", repo, say=lambda _: None)
    assert "a2 breaks" in (repo / "build" / "a2.log").read_text(), str(err.value)
    spans = _spans(repo)
    assert spans["b2"][1] == float("inf")  # stopped inside its 30 s (the test's own time shows it)
    assert "b3" not in spans and "d" not in spans  # d never started
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert {"a1", "b1"} <= set(lock["stages"]) and "a2" not in lock["stages"]  # finished stages stay recorded


def test_dlpipe_stages_run_forked_in_dvcs_directory_with_their_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stages whose command is `dlpipe ...` run forked from the lane's warm server (pipelines/stagefork.py): in the
    stage's directory (`wdir`, not the lane's), with their arguments; a failing one, after a good one in the same
    lane, fails the lane with the command's own error and exit code, and the good one stays recorded."""
    from pipelines.stagefork import command
    from tests.conftest import ROOT

    def stage(name: str, task: str, deps: list[str]) -> dict:
        cmd = f"dlpipe pipeline compile -t {task} -o out/{name} -p params.yaml"  # paths relative to the stage's wdir
        return {"cmd": cmd, "wdir": "sub", "deps": ["params.yaml", *deps], "outs": [f"out/{name}"]}

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    stages = {"good": stage("good", "tabular_wine", []), "bad": stage("bad", "no_such_task", ["out/good"])}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    for cmd in ("git init -q", "dvc init -q"):
        subprocess.run(cmd.split(), cwd=tmp_path, check=True, capture_output=True)
    assert all(command(s["cmd"], dict(os.environ)) is not None for s in stages.values())  # forked, not DVC's shell

    with pytest.raises(ReproError, match="failed") as failed:  # one lane: good, then bad
        reproduce(1, tmp_path / "build", tmp_path, say=lambda _: None)
    compiled = next(yaml.safe_load_all((tmp_path / "sub" / "out" / "good" / "tabular_wine.yaml").read_text()))
    assert compiled["pipelineInfo"]["name"] == "dlpipe-tabular-wine"
    assert set(yaml.safe_load((tmp_path / "dvc.lock").read_text())["stages"]) == {"good"}
    (log,) = (tmp_path / "build").glob("*.log")
    text = log.read_text()
    assert "error: unknown task 'no_such_task'" in text and "exited with 2" in text, (failed.value, text)
