"""Export step: ONNX with a dynamic batch axis (and length, for token ids), full checker pass, parity vs
PyTorch on the test split (token models: also at a shorter length)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from components.config import ExportConfig
from components.errors import DlpipeError
from components.io import atomic_write, sha256_file, write_json
from components.objectives import OutputHead
from components.prepare import load_split
from components.train import load_trained
from components.trainer import predict

GRAPHS = "graphs"  # token models' extra graphs (attention maps, sentence vectors) + index.json: a DVC output


class ParityError(DlpipeError):
    """The ONNX model disagrees with PyTorch beyond the tolerance."""


def export(data_dir: Path, model_dir: Path, out_dir: Path, cfg: ExportConfig) -> dict[str, Any]:
    """Write `out_dir/model.onnx` and `out_dir/export.json`; fail when parity exceeds the tolerance."""
    model, meta = load_trained(model_dir)
    head = OutputHead(model, meta).eval()
    x_test, _ = load_split(data_dir, "test")
    x = torch.as_tensor(x_test)
    in_name, out_name = meta["input"]["name"], meta["output"]["name"]

    tokens = meta["input"].get("dtype") == "int64"  # token ids: the length axis is dynamic too
    dims = {0: torch.export.Dim("batch", min=1)}
    if tokens:
        dims[x.dim() - 1] = torch.export.Dim("length", min=1, max=_max_len(meta))
        x = x[:256]  # (N, T, V) logits of a whole split would not fit in memory

    out_dir = Path(out_dir)
    checks = [x] + ([x[:3, ..., : x.shape[-1] // 2 + 1]] if tokens else [])  # and a shorter length
    onnx_path = out_dir / "model.onnx"
    proto, max_diff = _export_checked(head, checks, onnx_path, cfg.opset, in_name, out_name, dims)
    info = {
        "opset": cfg.opset,
        "inputs": [_io_spec(v) for v in proto.graph.input],
        "outputs": [_io_spec(v) for v in proto.graph.output],
        "parity_max_abs_diff": max_diff,
        "parity_rows": len(x),
        "tolerance": cfg.tolerance,
        "sha256": sha256_file(onnx_path),
    }
    # Token models also get graphs for attention maps and sentence vectors; model.onnx keeps SDPA's fast path.
    extras = {"attention": "attention", "embeddings": "sentence_vectors"} if tokens else {}
    for output, method in extras.items():
        if not hasattr(model, method):
            continue
        graph = Method(model, method)
        path = out_dir / GRAPHS / f"{output}.onnx"
        proto, diff = _export_checked(graph, [part[:4] for part in checks], path, cfg.opset, in_name, output, dims)
        info[output] = {"outputs": [_io_spec(v) for v in proto.graph.output], "parity_max_abs_diff": diff}
        max_diff = max(max_diff, diff)
    write_json(out_dir / GRAPHS / "index.json", {"graphs": [f"{k}.onnx" for k in extras if k in info]})
    if not max_diff <= cfg.tolerance:
        onnx_path.unlink()
        raise ParityError(f"ONNX vs PyTorch max abs difference {max_diff:.3g} exceeds {cfg.tolerance:g}")
    write_json(out_dir / "export.json", info)
    return info


class Method(torch.nn.Module):
    """One method of a model as a graph: `attention` gives every attention module's weights stacked (B, M, H,
    T, S), M modules in the model's order; `sentence_vectors` the [CLS] and mean-pooled states (B, 2, C)."""

    def __init__(self, model: torch.nn.Module, method: str) -> None:
        super().__init__()
        self.model, self.method = model, method

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = getattr(self.model, self.method)(ids)
        return torch.stack(out, dim=1) if isinstance(out, list) else out


def _max_len(meta: dict[str, Any]) -> int:
    """The longest token sequence the model takes (its position table)."""
    return (meta.get("model_inputs") or {}).get("max_len") or meta["tokenizer"]["max_length"]


def _export_checked(
    module: torch.nn.Module, checks: list[torch.Tensor], path: Path, opset: int, in_name: str, out_name: str, dims: dict
) -> tuple[onnx.ModelProto, float]:
    """Export, run the full checker, and return the largest |ONNX - PyTorch| over the `checks` inputs."""
    module.eval()
    atomic_write(path, lambda tmp: _export(module, checks[0][:2], tmp, opset, in_name, out_name, dims))
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    max_diff = 0.0
    for part in checks:
        with torch.no_grad():
            expected = predict(module, part, chunk=256).numpy()
        got = run_onnx(path, {in_name: part.numpy()})[0]
        max_diff = max(max_diff, float(np.max(np.abs(got - expected))))
    return proto, max_diff


def _export(
    module: torch.nn.Module, example: torch.Tensor, path: Path, opset: int, in_name: str, out_name: str, dims: dict
) -> None:
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=[in_name],
            output_names=[out_name],
            dynamic_shapes=(dims,),
            external_data=False,
            verbose=False,
        )
    program.save(str(path), external_data=False)


def run_onnx(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _io_spec(value: onnx.ValueInfoProto) -> dict[str, Any]:
    dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
    return {
        "name": value.name,
        "shape": dims,
        "elem_type": onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type),
    }
