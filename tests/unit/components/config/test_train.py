"""Training config: a bad field is named with its path."""

from __future__ import annotations

import pytest

from components.config import ConfigError, TrainConfig, validate


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"optimizer": "sgdd"}, "optimizer"),
        ({"lr": -0.1}, "lr"),
        ({"model": {"activation": "gelu"}}, "model.activation"),
        ({"batch_size": 0}, "batch_size"),
        ({"learning_rate": 0.1}, "learning_rate"),
    ],
)
def test_bad_config_names_the_field(raw: dict, field: str) -> None:
    from components.config import validate

    with pytest.raises(ConfigError, match=f"train.t.{field}"):
        validate(TrainConfig, raw, "train.t")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"scheduler": {"name": "linear"}}, "scheduler.name"),
        ({"scheduler": {"name": "onecycle", "warmup_epochs": 1}}, "scheduler"),
        ({"loss": "hinge"}, "loss"),
        ({"amp": "int8"}, "amp"),
        ({"gradients": {"clip_norm": -1}}, "gradients.clip_norm"),
    ],
)
def test_bad_engine_config_names_the_field(raw: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=f"train.t.{field}"):
        validate(TrainConfig, raw, "train.t")
