"""The registered model's `python_function` loader: one answer per input row, as the HTTP service answers.

MLflow copies this file into the model (its `code/` folder) and imports it as `pyfunc_onnx` when a user runs
`mlflow models predict -m models:/<task>@champion -i rows.csv -t csv` or `mlflow.pyfunc.load_model(...)`; it
imports only numpy, pandas and onnxruntime, never the training code. Tabular models take the named raw feature
columns of meta.json (any order, extra columns ignored); the ONNX graph scales them itself. A classifier answers
`label`, `probability` and one `probability.<class>` column per class; a regressor `prediction`.

ONNX Runtime runs on CUDA only when its CUDA provider is listed and a GPU device node exists; otherwise on CPU,
so a CPU-only machine with onnxruntime-gpu prints no provider errors.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


def providers() -> list[str]:
    import onnxruntime as ort

    gpu = CUDA in ort.get_available_providers() and bool(glob.glob("/dev/nvidia[0-9]*"))
    return [CUDA, CPU] if gpu else [CPU]


class RowsModel:
    """model.onnx and its meta.json, answering a DataFrame of raw rows with a DataFrame of per-row answers."""

    def __init__(self, onnx_path: str | Path) -> None:
        import onnxruntime as ort

        folder = Path(onnx_path).parent
        metas = sorted(folder.rglob("meta.json"))
        if not metas:
            raise FileNotFoundError(f"{folder}: no meta.json beside the model")
        self.meta = json.loads(metas[0].read_text())
        self.session = ort.InferenceSession(str(onnx_path), providers=providers())
        self.input = self.session.get_inputs()[0].name

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        meta = self.meta
        if meta.get("kind") != "tabular":
            raise ValueError(f"this loader scores tabular models; task kind {meta.get('kind')!r}: use `dlpipe serve`")
        frame = pd.DataFrame(data)
        names = meta["feature_names"]
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise ValueError(f"missing feature columns: {', '.join(missing)} (expected: {', '.join(names)})")
        x = frame[names].to_numpy(dtype=np.float64)
        if not np.isfinite(x).all():
            rows = sorted({int(r) for r in np.argwhere(~np.isfinite(x))[:, 0]})[:10]
            raise ValueError(f"non-finite or missing values in rows {rows}")
        output = self.session.run(None, {self.input: x.astype(np.float32)})[0]
        if meta["objective"] == "regression":
            return pd.DataFrame({"prediction": output[:, 0].astype(np.float64)})
        classes = meta["classes"]
        best = output.argmax(axis=1)
        answer = {"label": [classes[k] for k in best], "probability": output[np.arange(len(best)), best]}
        answer |= {f"probability.{c}": output[:, i] for i, c in enumerate(classes)}
        return pd.DataFrame(answer)


def _load_pyfunc(path: str) -> RowsModel:
    """MLflow's pyfunc entry point: `path` is the model's data file (model.onnx)."""
    return RowsModel(path)
