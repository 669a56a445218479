"""Export step: ONNX with a dynamic batch axis (and a dynamic sequence axis for sequence inputs), full
checker pass, parity vs PyTorch on the test split.

Sequence models (meta.json input shape [None, None, ...]) are exported from a short example whose length
differs from every length the parity check then runs (the test split's length and a shorter cut), so a
length frozen into the graph cannot pass unnoticed. The exporter records the example's sequence length in
the output shape metadata of LSTM/GRU graphs; ONNX Runtime would then warn on every call with another
length, so the output dims are rewritten to meta.json's shape with named dynamic axes.
"""

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


class ParityError(DlpipeError):
    """The ONNX model disagrees with PyTorch beyond the tolerance."""


def export(data_dir: Path, model_dir: Path, out_dir: Path, cfg: ExportConfig) -> dict[str, Any]:
    """Write `out_dir/model.onnx` and `out_dir/export.json`; fail when parity exceeds the tolerance."""
    model, meta = load_trained(model_dir)
    head = OutputHead(model, meta).eval()
    x_test, _ = load_split(data_dir, "test")
    x = torch.as_tensor(x_test)
    in_name, out_name = meta["input"]["name"], meta["output"]["name"]
    sequence = is_sequence(meta)
    example = x[:2, :EXAMPLE_STEPS] if sequence else x[:2]

    out_dir = Path(out_dir)
    onnx_path = out_dir / "model.onnx"
    atomic_write(onnx_path, lambda tmp: _export(head, example, tmp, cfg.opset, in_name, out_name, sequence))
    proto = onnx.load(onnx_path)
    fix_output_shapes(proto, meta)
    atomic_write(onnx_path, lambda tmp: onnx.save(proto, str(tmp)))
    onnx.checker.check_model(proto, full_check=True)

    checks = [x_test]
    if sequence:  # other lengths than the example's: the full test length and a cut of it
        cut = max(EXAMPLE_STEPS + 3, x_test.shape[1] // 2)
        checks.append(_cut(x_test, cut, meta))
    max_diff, lengths = 0.0, []
    # A forecast comes out in the series' units (CO2 ~ 370 ppm, where float32's resolution is 3e-5): compare
    # in the units the network computes in (scaled by the training span's std), as for every other task.
    unit = float(meta["target_scaler"]["scale"]) if "series" in meta else 1.0
    for feed in checks:
        with torch.no_grad():
            expected = predict(head, torch.as_tensor(feed)).numpy()
        got = run_onnx(onnx_path, {in_name: feed})[0]
        max_diff = max(max_diff, float(np.max(np.abs(got - expected)) / unit))
        lengths.append(int(feed.shape[1]))
    info = {
        "opset": cfg.opset,
        "inputs": [_io_spec(v) for v in proto.graph.input],
        "outputs": [_io_spec(v) for v in proto.graph.output],
        "parity_max_abs_diff": max_diff,
        **({"parity_units": "scaled (raw difference / target scale)"} if "series" in meta else {}),
        "parity_rows": len(x_test),
        **({"example_length": EXAMPLE_STEPS, "parity_lengths": lengths} if sequence else {}),
        "tolerance": cfg.tolerance,
        "sha256": sha256_file(onnx_path),
    }
    if not max_diff <= cfg.tolerance:
        onnx_path.unlink()
        raise ParityError(f"ONNX vs PyTorch max abs difference {max_diff:.3g} exceeds {cfg.tolerance:g}")
    write_json(out_dir / "export.json", info)
    return info


EXAMPLE_STEPS = 7  # the traced example's sequence length: no split uses it


def is_sequence(meta: dict[str, Any]) -> bool:
    """Inputs with a free sequence axis: token ids [None, None] or value sequences [None, None, F]."""
    shape = meta["input"]["shape"]
    return len(shape) >= 2 and shape[1] is None


def _cut(x: np.ndarray, length: int, meta: dict[str, Any]) -> np.ndarray:
    """A shorter version of the inputs: token ids keep their start (re-closed with [SEP] where cut), value
    windows keep their most recent steps."""
    if "tokenizer" not in meta:
        return np.ascontiguousarray(x[:, -length:])
    from components.tokenization import PAD_ID, SEP_ID

    out = x[:, :length].copy()
    cut_rows = out[:, -1] != PAD_ID
    out[cut_rows, -1] = SEP_ID
    return out


def fix_output_shapes(proto: onnx.ModelProto, meta: dict[str, Any]) -> None:
    """Rewrite each graph output's dims as meta.json's output shape, None -> a named dynamic axis."""
    names = ["batch", "sequence"]
    for value in proto.graph.output:
        dims = value.type.tensor_type.shape.dim
        want = meta["output"]["shape"]
        if len(dims) != len(want):
            continue
        for i, (dim, size) in enumerate(zip(dims, want, strict=True)):
            dim.Clear()
            if size is None:
                dim.dim_param = names[i] if i < len(names) else f"dim{i}"
            else:
                dim.dim_value = int(size)


def _export(
    module: torch.nn.Module,
    example: torch.Tensor,
    path: Path,
    opset: int,
    in_name: str,
    out_name: str,
    sequence: bool = False,
):
    if sequence and any(isinstance(m, torch.nn.RNN) for m in module.modules()):
        # The dynamo exporter unrolls a plain RNN over the example's steps (LSTM and GRU become ONNX ops),
        # freezing the sequence length; the TorchScript exporter maps it to ONNX's RNN op.
        return _export_legacy(module, example, path, opset, in_name, out_name)
    batch = torch.export.Dim("batch", min=1)
    axes = {0: batch, 1: torch.export.Dim("sequence", min=1)} if sequence else {0: batch}
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
            dynamic_shapes=(axes,),
            external_data=False,
            verbose=False,
        )
    program.save(str(path), external_data=False)


def _export_legacy(module: torch.nn.Module, example: torch.Tensor, path: Path, opset: int, in_name: str, out_name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[in_name],
            output_names=[out_name],
            dynamic_axes={in_name: {0: "batch", 1: "sequence"}, out_name: {0: "batch"}},
        )


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
