"""ONNX export: the exported graphs match PyTorch on any batch (and length), without runtime warnings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from components.data.splits import load_split
from components.release.export import _export, fix_output_shapes, run_onnx
from components.train.checkpoint import load_trained
from components.train.objectives import OutputHead
from models import build_model
from models.rnn import CELLS


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_onnx_matches_pytorch_on_any_batch(tabular_artifacts: Path, batch: int) -> None:
    info = json.loads((tabular_artifacts / "export.json").read_text())
    assert info["parity_max_abs_diff"] <= 1e-4 and info["inputs"][0]["shape"][0] not in (0, 1, 2)
    model, meta = load_trained(tabular_artifacts)
    x, _ = load_split(tabular_artifacts / "data", "test")
    x = np.resize(x, (batch, x.shape[1])).astype(np.float32)
    with torch.no_grad():
        expected = OutputHead(model, meta)(torch.as_tensor(x)).numpy()
    # the graph takes raw feature values: prepare's scaling is its first op
    raw = x.astype(np.float64) * np.asarray(meta.scaler["scale"]) + np.asarray(meta.scaler["mean"])
    got = run_onnx(tabular_artifacts / "model.onnx", {"features": raw.astype(np.float32)})[0]
    assert got.shape == (batch, 2)
    assert np.max(np.abs(got - expected)) <= 1e-4


@pytest.mark.parametrize("batch", [1, 5, 300])
def test_cnn_onnx_dynamic_batch_parity(digits_artifacts: Path, batch: int) -> None:
    info = json.loads((digits_artifacts / "export.json").read_text())
    assert info["parity_max_abs_diff"] <= 1e-4 and info["inputs"][0]["shape"][1:] == [1, 8, 8]
    model, meta = load_trained(digits_artifacts)
    x, _ = load_split(digits_artifacts / "data", "test")
    x = np.resize(x, (batch, *x.shape[1:])).astype(np.float32)
    with torch.no_grad():
        expected = OutputHead(model, meta)(torch.as_tensor(x)).numpy()
    # the graph takes 0..255 pixels: the normalisation of meta.json's preprocessing is its first op
    pre = meta.preprocessing
    pixels = (x * np.float32(pre["std"][0]) + np.float32(pre["mean"][0])) * np.float32(255)
    got = run_onnx(digits_artifacts / "model.onnx", {"image": pixels})[0]
    assert got.shape == (batch, 10) and np.max(np.abs(got - expected)) <= 1e-4


ORT_WARNINGS = """
import sys, numpy as np, onnxruntime as ort
opts = ort.SessionOptions(); opts.log_severity_level = 1
s = ort.InferenceSession(sys.argv[1], opts, providers=["CPUExecutionProvider"])
name = s.get_inputs()[0].name
for length in (3, 17, 40):
    s.run(None, {name: np.ones((2, length), dtype=np.int64)})
"""


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_onnx_dynamic_batch_and_length_parity_without_warnings(cell: str, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    torch.manual_seed(1)
    model = build_model("rnn", out_features=2, vocab_size=40, cell=cell, hidden=8, bidirectional=True,
                        embedding_dim=6, layers=2).eval()  # fmt: skip
    path = tmp_path / "m.onnx"
    _export(model, torch.randint(5, 40, (2, 7)), path, 20, "tokens", "logits", axis=1)
    proto = onnx.load(path)
    fix_output_shapes(proto, [None, 2])
    onnx.save(proto, path)
    onnx.checker.check_model(proto, full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for batch, length in ((1, 3), (5, 23), (3, 64)):
        ids = rng.integers(5, 40, (batch, length))
        ids[0, length // 2 :] = 0  # padding in the first row
        with torch.no_grad():
            expected = model(torch.as_tensor(ids)).numpy()
        got = session.run(None, {"tokens": ids})[0]
        assert np.abs(got - expected).max() <= 1e-4, (batch, length)
    proc = subprocess.run([sys.executable, "-c", ORT_WARNINGS, str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Expected shape" not in proc.stderr and "[W:" not in proc.stderr, proc.stderr[-2000:]
