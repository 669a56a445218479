"""Export's faults: a model that fails the ONNX checker leaves no model.onnx (and no export.json) behind, a missing
checkpoint no empty folder; a sequence graph names the output axes that follow the input's length."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from components.config import ExportConfig, TrainConfig
from components.release.export import _export_checked, export, run_onnx
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


def test_a_missing_checkpoint_leaves_no_empty_folder(tabular_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "artifacts" / "tabular"
    with pytest.raises(FileNotFoundError, match="checkpoint.pt not found"):
        export(tabular_data, out, out, ExportConfig())
    assert not out.exists()


class _Attention(torch.nn.Module):
    """(B, T) ids -> (B, H, T, T) weights: two axes follow the length, the heads' does not."""

    def __init__(self, heads: int = 3) -> None:
        super().__init__()
        self.embed, self.heads = torch.nn.Embedding(20, 4 * heads), heads

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        q = self.embed(ids).unflatten(-1, (self.heads, 4)).transpose(1, 2)  # (B, H, T, 4)
        return torch.softmax(q @ q.transpose(-1, -2), dim=-1)


@pytest.mark.parametrize("length", [1, 5])
def test_sequence_graphs_name_the_axes_that_follow_the_length(length: int, tmp_path: Path) -> None:
    model, path = _Attention().eval(), tmp_path / "attention.onnx"
    example, ids = torch.randint(0, 20, (2, length)), torch.randint(0, 20, (4, 9))  # ids: another batch and length
    _export_checked(model, [ids.numpy()], path, "attention", example=example, opset=20, in_name="tokens", axis=1)
    dims = [d.dim_param or d.dim_value for d in onnx.load(path).graph.output[0].type.tensor_type.shape.dim]
    # a 1-step example cannot show which axes follow the length: only the batch axis is named then
    assert dims == (["batch", 3, "sequence", "sequence"] if length > 1 else ["batch", 3, 1, 1])
    with torch.no_grad():
        np.testing.assert_allclose(run_onnx(path, {"tokens": ids.numpy()})[0], model(ids).numpy(), atol=1e-6)
