"""Where each step reads and writes, for one task (the same layout DVC's stages declare)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the repository (an editable install or a checkout) this code is in


@dataclass(frozen=True)
class Layout:
    task: str
    root: Path = Path(".")

    @property
    def raw(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def model(self) -> Path:
        """checkpoint.pt, history.csv, run.json, model.onnx, export.json, registration.json."""
        return self.root / "artifacts" / self.task

    @property
    def data(self) -> Path:
        """Splits and meta.json."""
        return self.model / "data"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics" / f"{self.task}.json"

    @property
    def plots(self) -> Path:
        return self.root / "plots" / self.task

    @property
    def registration(self) -> Path:
        return self.model / "registration.json"

    @property
    def augment(self) -> Path:
        """The augmentation policy (augment.json) and its preview grid."""
        return self.model / "augment"

    @property
    def best_params(self) -> Path:
        """Tuning's result: overrides of train.<task> (empty when tuning is off)."""
        return self.model / "best_params.yaml"

    @property
    def tuning_plots(self) -> Path:
        return self.root / "plots" / f"{self.task}-tuning"
