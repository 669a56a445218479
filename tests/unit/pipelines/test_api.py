"""pipelines/api.py: keyword arguments become the same overrides as `-s key=value`, validated the same way."""

from __future__ import annotations

import pytest

from components.config import ConfigError
from pipelines import api


def test_overrides_round_trip_through_yaml() -> None:
    values = {"lr": 1e-05, "model__hidden": [128, 64], "optimizer": "adam", "early_stopping__patience": 3}
    assert api.overrides_of(values) == [
        "lr=1.0e-05",
        "model.hidden=[128, 64]",
        "optimizer=adam",
        "early_stopping.patience=3",
    ]
    cfg = api.config("train", "tabular", **values)
    assert (cfg.lr, cfg.model.hidden, cfg.optimizer, cfg.early_stopping.patience) == (1e-05, [128, 64], "adam", 3)


def test_a_bad_keyword_is_a_config_error_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"train\.tabular.*epochs"):
        api.config("train", "tabular", epochs=-1)
    with pytest.raises(ConfigError, match="unknown task"):
        api.config("train", "no_such_task")
