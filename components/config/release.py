"""params.yaml `export.<task>` and `register.<task>`: ONNX export checks and the champion promotion rule."""

from __future__ import annotations

from pydantic import (
    Field,
)

from components.config.base import _Strict


class ExportConfig(_Strict):
    """ONNX export settings; parity above `tolerance` fails the export."""

    opset: int = Field(20, ge=17)
    tolerance: float = Field(1e-4, gt=0)


class RegisterConfig(_Strict):
    """Champion promotion rule for the registered model."""

    primary_metric: str
    greater_is_better: bool = True
    alias: str = "champion"
    min_score: float | None = Field(
        None, description="promotion gate: register only when the primary metric reaches this (None = always)"
    )
