"""A tuning study's faults: a study whose every trial fails stops with the first trial's error."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from components.tune.step import work
from components.tune.study import TuningError, open_study
from tests.helpers.tuning import cfg


def _timeout(signum: int, frame: object) -> None:
    raise TimeoutError("the study was still running after 60 s")


def test_a_study_whose_every_trial_diverges_stops_with_the_first_error(tmp_path: Path, tabular_data: Path) -> None:
    diverging = {"lr": {"type": "float", "low": 1e25, "high": 1e30, "log": True}}
    c = cfg(tmp_path, n_trials=3, epochs=2, space=diverging, pruner="none", sampler="random", study_name="nan")
    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(60)
    try:
        with pytest.raises(TuningError, match=r"all 3 trials failed; the first \(trial 0\): loss became nan"):
            work(tabular_data, "tabular", c, {"optimizer": "gd", "model": {"hidden": [4]}}, None)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert [t.state.name for t in open_study(c, "tabular").trials] == ["FAIL"] * 3
