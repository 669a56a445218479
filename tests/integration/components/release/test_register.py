"""Registering: the champion alias moves only when the score is better."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.config import RegisterConfig
from components.release import register as register_module
from components.release.register import register


def test_champion_moves_only_when_better(tabular_artifacts: Path, tmp_path: Path) -> None:
    """The fixture registered version 1 as champion; a worse score must not take the alias, a better one must."""
    art = tabular_artifacts
    cfg = RegisterConfig(primary_metric="log_loss", greater_is_better=False, alias="test-champion")
    decisions = []
    for log_loss in (0.30, 0.50, 0.10):
        metrics = tmp_path / f"m{log_loss}.json"
        metrics.write_text(json.dumps({"log_loss": log_loss}))
        decisions.append(register(art / "data", art, art, metrics, tmp_path / "r.json", "tabular", cfg))
    assert [d["promoted"] for d in decisions] == [True, False, True]
    assert decisions[1]["champion_score_before"] == 0.30 and decisions[1]["champion_version"] == decisions[0]["version"]
    assert decisions[2]["champion_version"] == decisions[2]["version"]


def test_registering_checks_the_pins_without_mapping_every_installed_package(
    tabular_artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow still compares each pinned requirement with the installed version (a wrong pin is named in its
    warning), without first mapping every installed module to its distribution, as a new step process would."""
    from mlflow.utils import requirements_utils

    scans, warned = [], []
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)  # a new process: not built yet
    monkeypatch.setattr(requirements_utils.importlib_metadata, "packages_distributions", lambda: scans.append(1) or {})
    monkeypatch.setattr(requirements_utils._logger, "warning", lambda msg, *args, **kw: warned.append(str(msg)))
    pins = register_module.serving_requirements()
    wrong = [("numpy==0.0.1" if pin.startswith("numpy==") else pin) for pin in pins]
    monkeypatch.setattr(register_module, "serving_requirements", lambda text=False: wrong)
    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps({"log_loss": 0.9}))
    cfg = RegisterConfig(primary_metric="log_loss", greater_is_better=False, alias="pins-checked")
    decision = register(
        tabular_artifacts / "data", tabular_artifacts, tabular_artifacts, metrics, tmp_path / "r.json", "tabular", cfg
    )
    assert decision["registered"] and scans == []
    assert any("numpy (current: " in w and "required: numpy==0.0.1" in w for w in warned), warned
    assert requirements_utils._MODULES_TO_PACKAGES is None  # put back as it was
