"""`dlpipe repro` queues its lanes longest first, by the seconds its reports recorded per stage."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.repro import REFERENCE_TIMES, Lane, known_times, lanes, longest_first


def test_lanes_queue_longest_first_and_unknown_stages_count_as_the_mean() -> None:
    found = [Lane("a", ["a1", "a2"]), Lane("b", ["b1"]), Lane("c", ["c1"]), Lane("d", ["d1"]), Lane("e", ["e1"])]
    times = {"a1": 5.0, "a2": 4.0, "b1": 30.0, "d1": 7.0, "e1": 2.0}  # c1 unknown: the mean, 9.6 s
    assert [lane.name for lane in longest_first(found, times)] == ["b", "c", "a", "d", "e"]  # 30, 9.6, 9, 7, 2 s
    assert [lane.name for lane in longest_first(found, {})] == ["a", "b", "c", "d", "e"]  # 1 s a stage; ties: as found


def test_a_later_report_wins_and_a_broken_one_adds_nothing(tmp_path: Path) -> None:
    reference, last, broken = tmp_path / "reference.json", tmp_path / "last.json", tmp_path / "broken.json"
    reference.write_text(json.dumps({"stages": {"train@x": 100.0, "train@y": 50.0}}))
    last.write_text(json.dumps({"jobs": 2, "wall_s": 60.0, "stages": {"train@y": 500.0}}))
    broken.write_text('{"stages": ')  # a run killed while writing
    times = known_times(reference, broken, last, tmp_path / "missing.json")
    assert times == {"train@x": 100.0, "train@y": 500.0}


def test_the_reference_names_this_projects_stages() -> None:
    """pipelines/stage_times.json (the committed reference) has a figure for every stage of dvc.yaml's lanes, so a
    fresh clone orders them all; a stage added since shows up here."""
    stages = {stage for lane in lanes(Path(__file__).parents[3]) for stage in lane.stages}
    assert stages <= set(known_times(REFERENCE_TIMES)), stages - set(known_times(REFERENCE_TIMES))
