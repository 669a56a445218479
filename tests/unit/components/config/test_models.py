"""Model configs: the CNN's fields are checked and named."""

from __future__ import annotations

import pytest

from components.config import ConfigError, TrainConfig, validate


def test_cnn_config_is_checked_with_field_names() -> None:
    cfg = TrainConfig.model_validate({"model": {"name": "cnn", "channels": [8], "padding": 2}})
    assert cfg.model.padding == 2
    with pytest.raises(ConfigError, match="train.t.model.hidden"):
        validate(TrainConfig, {"model": {"name": "cnn", "hidden": [8]}}, "train.t")
    with pytest.raises(ConfigError, match="odd kernel"):
        validate(TrainConfig, {"model": {"name": "cnn", "kernel": 4}}, "train.t")
    with pytest.raises(ConfigError, match="batch_size 1"):
        validate(TrainConfig, {"model": {"name": "cnn"}, "batch_size": 1}, "train.t")
