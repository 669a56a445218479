"""The search space, training config and tuning config the tuning tests share."""

from __future__ import annotations

from pathlib import Path

from components.config import TuneConfig

SPACE = {
    "optimizer": {"type": "categorical", "choices": ["gd", "momentum", "adam"]},
    "lr": {"type": "float", "low": 1e-3, "high": 0.3, "log": True},
    "momentum": {"type": "float", "low": 0.5, "high": 0.95, "when": {"optimizer": ["momentum"]}},
    "model.hidden": {"type": "categorical", "choices": [[16], [32, 16]]},
}
TRAIN = {"model": {"hidden": [16]}, "early_stopping": {"patience": 5}}


def cfg(tmp_path: Path, **kw) -> TuneConfig:
    base = {"n_trials": 4, "epochs": 4, "space": SPACE, "storage": f"sqlite:///{tmp_path / 'optuna.db'}"}
    return TuneConfig.model_validate({**base, **kw})
