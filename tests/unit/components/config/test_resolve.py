"""Resolving configs: tuned values flow into the training config."""

from __future__ import annotations

from pathlib import Path

import yaml

from components.config import tuned_config


def test_best_params_flow_into_train_config(tmp_path: Path) -> None:
    best = tmp_path / "best_params.yaml"
    best.write_text(yaml.safe_dump({"lr": 0.05, "model.hidden": [8, 4]}))
    raw = tuned_config({"lr": 0.001, "model": {"hidden": [64], "dropout": 0.1}}, best)
    assert raw == {"lr": 0.05, "model": {"hidden": [8, 4], "dropout": 0.1}}
    assert tuned_config({"lr": 0.001}, tmp_path / "absent.yaml") == {"lr": 0.001}
