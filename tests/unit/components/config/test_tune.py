"""Tuning config: each bad search space or sampler setting is named."""

from __future__ import annotations

import pytest

from components.config import ConfigError, TuneConfig, validate
from tests.helpers.tuning import SPACE


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"n_trials": 3}, "non-empty search `space`"),
        ({"sampler": "annealing"}, "tune.t.sampler"),
        ({"n_trials": 1, "space": {"lr": {"type": "float", "low": 1, "high": 0.1}}}, "tune.t.space.lr"),
        ({"n_trials": 1, "space": {"lr": {"type": "float", "low": 0, "high": 1, "log": True}}}, "log scale"),
        ({"n_trials": 1, "space": {"m": {"type": "float", "low": 0, "high": 1, "when": {"x": [1]}}}}, "another"),
        (
            {
                "n_trials": 1,
                "space": {
                    "a": {"type": "categorical", "choices": [1], "when": {"b": [1]}},
                    "b": {"type": "categorical", "choices": [1], "when": {"a": [1]}},
                },
            },
            "circular",
        ),
        ({"n_trials": 1, "sampler": "nsga2", "space": SPACE}, "second_objective"),
        ({"n_trials": 1, "sampler": "grid", "space": SPACE}, "grid sampling"),
        ({"n_trials": 1, "second_objective": "n_parameters", "space": SPACE}, "prunes single-objective"),
    ],
)
def test_bad_tuning_config_is_named(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(TuneConfig, raw, "tune.t")
