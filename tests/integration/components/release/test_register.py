"""Registering: the champion alias moves only when the score is better."""

from __future__ import annotations

import json
from pathlib import Path

from components.config import RegisterConfig
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
