"""Export step: ONNX with a dynamic batch axis (and a dynamic sequence axis for sequence inputs), full
checker pass, parity vs PyTorch on the test split's first PARITY_ROWS rows (PARITY_ROWS_TOKENS for token models).

Sequence models (meta.json input shape with a free axis after the batch: token ids [None, None], source/target
pairs [None, 2, None], value sequences [None, None, F]) are exported from a short example whose length differs
from every length the parity check then runs (the test split's length and a shorter cut), so a length frozen
into the graph cannot pass unnoticed. Every model goes through torch's TorchScript exporter (`_export` says why). An
exporter may record the example's sequence length in the output shape metadata; ONNX Runtime would then warn on every
call with another length, so model.onnx's output dims are rewritten to meta.json's shape with named dynamic axes.
Token models also get graphs for attention maps and sentence vectors (GRAPHS).

The graph takes what a user has: tabular models take raw feature values in meta.json's feature order, image
models 0..255 pixel values [N, C, H, W] (float32, already resized and converted to the model's channels); the
training scaler (meta.json `scaler`) or the image normalisation (meta.json `preprocessing`: x / 255 - mean, / std)
runs inside the graph as its first op, so the registered model stands alone and no server scales again. Parity
is checked on those raw inputs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from components.config import ExportConfig
from components.core.contract import TaskMeta
from components.core.errors import DlpipeError
from components.core.io import atomic_write, sha256_file, write_json
from components.core.tokens import PAD_ID, SEP_ID
from components.data.splits import load_split
from components.train.batches import predict
from components.train.checkpoint import load_trained
from components.train.objectives import OutputHead

GRAPHS = "graphs"  # token models' extra graphs (attention maps, sentence vectors) + index.json: a DVC output
EXAMPLE_STEPS = 7  # the traced example's sequence length: no split uses it
PARITY_ROWS = 1024  # real inputs enough to catch a numeric or shape fault; a whole split (10,000 images) adds time
# Token models: one text through a transformer costs as much as ~100 images (the MiniLM's 2 x 1,024-text check took
# 50 s of a 2-core export, 256 texts 15 s); per-position outputs (N, T, V): 1,024 of them would not fit in memory.
PARITY_ROWS_TOKENS = 256


@dataclass(frozen=True)
class KindExport:
    """What export does differently for a kind of task."""

    token_ids: bool = False  # int64 ids: shorter checks keep their start; attention / sentence-vector graphs too
    scaled_parity: bool = False  # outputs in raw units: parity compared in the scaled units the network computes in
    raw_features: bool = False  # the input scaler (meta.json `scaler`) goes inside the graph: raw values in
    raw_pixels: bool = False  # the normalisation (meta.json `preprocessing`) goes inside the graph: 0..255 pixels in


EXPORTS: dict[str, KindExport] = {  # kind (meta.json) -> its export behaviour
    "tabular": KindExport(raw_features=True),
    "image": KindExport(raw_pixels=True),
    "series": KindExport(scaled_parity=True),
    "text": KindExport(token_ids=True),
    "tokens": KindExport(token_ids=True),
}


class ParityError(DlpipeError):
    """The ONNX model disagrees with PyTorch beyond the tolerance."""


def export(data_dir: Path, model_dir: Path, out_dir: Path, cfg: ExportConfig) -> dict[str, Any]:
    """Write `out_dir/model.onnx` and `out_dir/export.json`; fail when parity exceeds the tolerance.

    Everything is exported and checked in a staging folder inside `out_dir`, then renamed into place
    (export.json last): a failed checker or parity check leaves no model.onnx and no export.json behind, and a
    failure before anything was written (no checkpoint) leaves no `out_dir` it created."""
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    try:
        info = _export_into(data_dir, model_dir, stage, cfg)
        write_json(stage / "export.json", info)
        _publish(stage, out_dir, last=("model.onnx", "export.json"))
    except BaseException:
        for name in ("model.onnx", "export.json"):  # an older export would pass for this checkpoint's
            (out_dir / name).unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()
    return info


def _publish(stage: Path, out_dir: Path, last: tuple[str, ...]) -> None:
    """Rename every file of `stage` to the same place under `out_dir`; the top-level `last` ones last, in order."""
    files = [p for p in sorted(stage.rglob("*")) if p.is_file() and p.relative_to(stage).as_posix() not in last]
    for file in [*files, *(stage / name for name in last if (stage / name).is_file())]:
        target = out_dir / file.relative_to(stage)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(file, target)


def _export_into(data_dir: Path, model_dir: Path, out_dir: Path, cfg: ExportConfig) -> dict[str, Any]:
    """model.onnx (+ token models' graphs) in `out_dir`, checked; its export.json content."""
    model, meta = load_trained(model_dir)
    head: torch.nn.Module = OutputHead(model, meta).eval()
    x_test, _ = load_split(data_dir, "test")
    if EXPORTS[meta.kind].raw_features:
        head = Standardized(head, meta.scaler).eval()
        x_test = head.unscale(x_test)
    elif EXPORTS[meta.kind].raw_pixels:
        pre = meta.preprocessing
        scale = [255.0 * s for s in pre["std"]]  # x / 255 - mean, / std  ==  (x - 255 mean) / (255 std)
        head = Standardized(head, {"mean": [255.0 * m for m in pre["mean"]], "scale": scale}, axis=1).eval()
        x_test = head.unscale(x_test)
    kind = EXPORTS[meta.kind]
    tokens = kind.token_ids
    x_test = x_test[: PARITY_ROWS_TOKENS if tokens or len(meta.output.shape) > 2 else PARITY_ROWS]
    in_name, out_name = meta.input.name, meta.output.name
    axis = sequence_axis(meta)
    example = torch.as_tensor(x_test[:2])
    checks = [x_test]
    if axis is not None:  # other lengths than the example's: the full test length and a cut of it
        example = example.narrow(axis, 0, min(EXAMPLE_STEPS, example.shape[axis]))
        checks.append(_cut(x_test, axis, max(EXAMPLE_STEPS + 3, x_test.shape[axis] // 2), tokens))
    export_graph = {"example": example, "opset": cfg.opset, "in_name": in_name, "axis": axis}

    out_dir = Path(out_dir)
    onnx_path = out_dir / "model.onnx"
    # A forecast comes out in the series' units (CO2 ~ 370 ppm, where float32's resolution is 3e-5): compare
    # in the units the network computes in (scaled by the training span's std), as for every other task.
    unit = float(meta.target_scaler["scale"]) if kind.scaled_parity else 1.0
    proto, max_diff = _export_checked(
        head, checks, onnx_path, out_name, out_shape=meta.output.shape, unit=unit, **export_graph
    )
    info = {
        "opset": cfg.opset,
        "inputs": [_io_spec(v) for v in proto.graph.input],
        "outputs": [_io_spec(v) for v in proto.graph.output],
        "parity_max_abs_diff": max_diff,
        **({"parity_units": "scaled (raw difference / target scale)"} if kind.scaled_parity else {}),
        "parity_rows": len(x_test),
        **(
            {"example_length": EXAMPLE_STEPS, "parity_lengths": [int(c.shape[axis]) for c in checks]}
            if axis is not None
            else {}
        ),
        "tolerance": cfg.tolerance,
        "sha256": sha256_file(onnx_path),
    }
    # Token models also get graphs for attention maps and sentence vectors; model.onnx keeps SDPA's fast path.
    extras = {"attention": "attention", "embeddings": "sentence_vectors"} if tokens else {}
    for output, method in extras.items():
        if not hasattr(model, method):
            continue
        path = out_dir / GRAPHS / f"{output}.onnx"
        proto, diff = _export_checked(Method(model, method), [c[:4] for c in checks], path, output, **export_graph)
        info[output] = {"outputs": [_io_spec(v) for v in proto.graph.output], "parity_max_abs_diff": diff}
        max_diff = max(max_diff, diff)
    write_json(out_dir / GRAPHS / "index.json", {"graphs": [f"{k}.onnx" for k in extras if k in info]})
    if not max_diff <= cfg.tolerance:
        raise ParityError(f"ONNX vs PyTorch max abs difference {max_diff:.3g} exceeds {cfg.tolerance:g}")
    return info


def sequence_axis(meta: TaskMeta) -> int | None:
    """The free sequence axis of meta.json's input shape (the last None after the batch axis), if any."""
    free = [i for i, size in enumerate(meta.input.shape) if i and size is None]
    return free[-1] if free else None


def _cut(x: np.ndarray, axis: int, length: int, tokens: bool) -> np.ndarray:
    """A shorter version of the inputs: token ids keep their start (re-closed with [SEP] where cut), value
    windows keep their most recent steps."""
    if not tokens:
        return np.ascontiguousarray(x.take(range(x.shape[axis] - length, x.shape[axis]), axis=axis))
    out = x.take(range(length), axis=axis)
    last = np.moveaxis(out, axis, -1)[..., -1]  # a view into `out`
    last[last != PAD_ID] = SEP_ID
    return out


class Standardized(torch.nn.Module):
    """A model that takes raw values: (x - mean) / scale per feature (the last axis) or per channel (`axis=1` of
    [N, C, H, W]) runs first, in the graph."""

    def __init__(self, model: torch.nn.Module, scaler: dict[str, list[float]], axis: int = -1) -> None:
        super().__init__()
        self.model = model
        shape = (-1,) if axis == -1 else (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor(scaler["mean"], dtype=torch.float32).reshape(shape))
        self.register_buffer("scale", torch.tensor(scaler["scale"], dtype=torch.float32).reshape(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.scale)

    def unscale(self, x: np.ndarray) -> np.ndarray:
        """Scaled inputs (a loaded split) back to raw values, float32."""
        mean, scale = (b.double().numpy() for b in (self.mean, self.scale))
        return (x.astype(np.float64) * scale + mean).astype(np.float32)


class Method(torch.nn.Module):
    """One method of a model as a graph: `attention` gives every attention module's weights stacked (B, M, H,
    T, S), M modules in the model's order; `sentence_vectors` the [CLS] and mean-pooled states (B, 2, C)."""

    def __init__(self, model: torch.nn.Module, method: str) -> None:
        super().__init__()
        self.model, self.method = model, method

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = getattr(self.model, self.method)(ids)
        return torch.stack(out, dim=1) if isinstance(out, list) else out


def _export_checked(
    module: torch.nn.Module,
    checks: list[np.ndarray],
    path: Path,
    out_name: str,
    *,
    example: torch.Tensor,
    opset: int,
    in_name: str,
    axis: int | None,
    out_shape: list[int | None] | None = None,
    unit: float = 1.0,
) -> tuple[onnx.ModelProto, float]:
    """Export from `example`, rewrite the output dims as `out_shape` (a sequence graph meta.json does not describe:
    its own output shape, `_output_shape`), run the full checker, and return the largest |ONNX - PyTorch| / `unit`
    over the `checks` inputs."""
    module.eval()
    if axis is not None and out_shape is None:
        out_shape = _output_shape(module, example, axis)
    atomic_write(path, lambda tmp: _export(module, example, tmp, opset, in_name, out_name, axis, out_shape))
    proto = onnx.load(path)
    if out_shape is not None:
        before = [value.SerializeToString() for value in proto.graph.output]
        fix_output_shapes(proto, out_shape)
        if [value.SerializeToString() for value in proto.graph.output] != before:  # the exporter left a dim symbolic
            atomic_write(path, lambda tmp: onnx.save(proto, str(tmp)))
    onnx.checker.check_model(proto, full_check=True)
    max_diff = 0.0
    for feed in checks:
        with torch.no_grad():
            expected = predict(module, torch.as_tensor(feed), chunk=PARITY_ROWS_TOKENS).numpy()
        got = run_onnx(path, {in_name: feed})[0]
        max_diff = max(max_diff, float(np.max(np.abs(got - expected)) / unit))
    return proto, max_diff


def fix_output_shapes(proto: onnx.ModelProto, shape: list[int | None]) -> None:
    """Rewrite each graph output's dims as meta.json's output `shape`, None -> a named dynamic axis (the first one
    "batch", any other "sequence")."""
    for value in proto.graph.output:
        dims = value.type.tensor_type.shape.dim
        if len(dims) != len(shape):
            continue
        for i, (dim, size) in enumerate(zip(dims, shape, strict=True)):
            dim.Clear()
            if size is None:
                dim.dim_param = "sequence" if i else "batch"
            else:
                dim.dim_value = int(size)


def _export(
    module: torch.nn.Module,
    example: torch.Tensor,
    path: Path,
    opset: int,
    in_name: str,
    out_name: str,
    axis: int | None = None,
    out_shape: list[int | None] | None = None,
) -> None:
    """Export through torch's TorchScript exporter. `axis`: the input's free sequence axis, or None for a batch axis
    only; `out_shape`: the output's, None where free (axis 0 is named "batch", any other free axis "sequence").

    One exporter for every model. It maps RNN / LSTM / GRU to ONNX's ops, where the dynamo exporter unrolls a plain
    RNN over the example's steps (freezing the length) and traces LSTM / GRU through their Python decompositions
    (forecast's GRU: 10 s against 0.3 s), and once specialised a transformer's sequence axis to the example's length.
    It is also the faster one, because it needs neither torch.export's tracing nor onnxscript: MiniLM's three graphs
    19 s against 43 s, encoder_mlm's 8 s against 27 s, the whole `dlpipe export digits` 2.2 s against 8.3 s, with the
    same parity and ONNX Runtime latency (docs/results.md). The parity checks (another batch, two other lengths)
    catch a frozen axis."""
    in_axes = {0: "batch"} | ({axis: "sequence"} if axis is not None else {})
    out_axes = {d: "sequence" if d else "batch" for d, size in enumerate(out_shape or [None]) if size is None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's DeprecationWarning, tracer warnings
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[in_name],
            output_names=[out_name],
            dynamic_axes={in_name: in_axes, out_name: out_axes},
        )


def _output_shape(module: torch.nn.Module, example: torch.Tensor, axis: int) -> list[int | None]:
    """The module's output shape, None on the batch axis and on the axes that follow the input's length (those that
    change between two lengths, where the example has two)."""
    with torch.no_grad():
        lengths = sorted({example.shape[axis], max(1, example.shape[axis] - 1)}, reverse=True)
        shapes = [module(example.narrow(axis, 0, n)).shape for n in lengths]
    return [None if d == 0 or size != shapes[-1][d] else size for d, size in enumerate(shapes[0])]


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
