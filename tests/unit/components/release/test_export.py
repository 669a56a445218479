"""Export's faults: a model that fails the ONNX checker leaves no model.onnx (and no export.json) behind."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from components.config import ExportConfig, TrainConfig
from components.release.export import export
from components.train.step import train


@pytest.fixture(scope="module")
def trained(tabular_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tabular-model")
    cfg = TrainConfig.model_validate({"epochs": 1, "model": {"hidden": [8]}})
    train(tabular_data, out, cfg, "tabular", progress=False)
    return out


def _left(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if not p.name.endswith((".pt", ".csv")))


def test_a_model_the_onnx_checker_rejects_leaves_no_model_onnx(
    trained: Path, tabular_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export(tabular_data, trained, tmp_path, ExportConfig())  # an earlier good export of another checkpoint
    assert (tmp_path / "model.onnx").is_file()

    def reject(proto, full_check=False):  # the checker finds the graph invalid
        raise onnx.checker.ValidationError("Field 'shape' of 'type' is required but missing.")

    monkeypatch.setattr(onnx.checker, "check_model", reject)
    with pytest.raises(onnx.checker.ValidationError):
        export(tabular_data, trained, tmp_path, ExportConfig())
    assert "model.onnx" not in _left(tmp_path) and "export.json" not in _left(tmp_path)
    assert not [name for name in _left(tmp_path) if name.startswith(".") or name.endswith(".tmp")]  # no staging
