"""The registered model's `python_function` loader: one answer per input row, as the HTTP service answers.

MLflow copies this file into the model (its `code/` folder) and imports it as `pyfunc_onnx` when a user runs
`mlflow models predict -m models:/<task>@champion -i rows.csv -t csv` or `mlflow.pyfunc.load_model(...)`; it
imports only numpy, pandas, onnxruntime (and tokenizers for text models), never the training code. What a row is:

- tabular: the named raw feature columns of meta.json (any order); the ONNX graph scales them itself.
- image: one image per row as columns `pixel0` ... `pixel<C*H*W - 1>`, whole values 0..255 at meta.json's size
  (`preprocessing.resize`), in [channel][row][column] order (for 28x28 grayscale: the usual MNIST CSV layout);
  the graph normalises them itself.
- text: a `text` column; the model's tokenizer.json and the encoding rule of training and serving (the copy of
  components/core/tokens.py beside this file) turn it into token ids.

Other columns are ignored. A classifier answers `label`, `probability` and one `probability.<class>` column per
class (text adds `tokens` and `truncated`, as `POST /classify` does); a regressor `prediction`. Bad rows are
refused with an error naming them, before any row is scored.

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
TEXT_COLUMN = "text"
CHUNK = 256  # rows per ONNX Runtime call


def providers() -> list[str]:
    import onnxruntime as ort

    gpu = CUDA in ort.get_available_providers() and bool(glob.glob("/dev/nvidia[0-9]*"))
    return [CUDA, CPU] if gpu else [CPU]


def pixel_columns(meta: dict[str, Any]) -> list[str]:
    """An image model's input columns: pixel0 ... pixel<C*H*W - 1>."""
    height, width = meta["preprocessing"]["resize"]
    return [f"pixel{i}" for i in range(meta["preprocessing"]["channels"] * height * width)]


def _encode() -> Any:
    if __package__:  # dlpipe's own code: components.release.pyfunc_onnx
        from components.core.tokens import encode
    else:  # the MLflow model's code/ folder: register copies components/core/tokens.py beside this file
        from dlpipe_tokens import encode
    return encode


def _bad_rows(mask: np.ndarray) -> list[int]:
    """The first ten 1-based row numbers where `mask` (rows, ...) is true."""
    return [int(r) + 1 for r in np.unique(np.argwhere(mask)[:, 0])[:10]]


class RowsModel:
    """model.onnx, its meta.json (and tokenizer.json for text), answering a DataFrame of raw rows with a
    DataFrame of per-row answers."""

    def __init__(self, onnx_path: str | Path, files: str | Path | None = None) -> None:
        """`files`: the folder holding meta.json (and tokenizer.json), searched recursively; default the model's
        own folder (an MLflow model keeps them under extra_files/)."""
        import onnxruntime as ort

        folder = Path(files or Path(onnx_path).parent)
        metas = sorted(folder.rglob("meta.json"))
        if not metas:
            raise FileNotFoundError(f"{folder}: no meta.json beside the model")
        self.meta = json.loads(metas[0].read_text())
        if self.meta.get("kind") not in ("tabular", "image", "text"):
            raise ValueError(f"this loader scores tabular, image and text models, not {self.meta.get('kind')!r}")
        self.tokenizer = self._tokenizer(folder) if self.meta["kind"] == "text" else None
        self.session = ort.InferenceSession(str(onnx_path), providers=providers())
        self.input = self.session.get_inputs()[0].name

    def _tokenizer(self, folder: Path) -> Any:
        from tokenizers import Tokenizer

        files = sorted(folder.rglob(self.meta["tokenizer"].get("file", "tokenizer.json")))
        if not files:
            raise FileNotFoundError(f"{folder}: no tokenizer.json beside the model")
        tok = Tokenizer.from_file(str(files[0]))
        tok.no_padding()  # encode owns padding and truncation
        tok.no_truncation()
        return tok

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        frame = pd.DataFrame(data)
        kind = self.meta["kind"]
        if kind == "text":
            return self._classify(frame)
        x = self._pixels(frame) if kind == "image" else self._features(frame)
        return self.answers(self._run(x))

    def _run(self, x: np.ndarray) -> np.ndarray:
        outputs = [self.session.run(None, {self.input: x[i : i + CHUNK]})[0] for i in range(0, len(x), CHUNK)]
        return np.concatenate(outputs) if outputs else np.zeros((0, len(self.meta.get("classes") or [0])), np.float32)

    def _numbers(self, frame: pd.DataFrame, names: list[str], what: str) -> np.ndarray:
        missing = [n for n in names if n not in frame.columns]
        if missing:
            shown = ", ".join(missing[:10]) + (f" (and {len(missing) - 10} more)" if len(missing) > 10 else "")
            raise ValueError(f"missing {what} columns: {shown} (expected: {names[0]} ... {names[-1]})")
        values = frame[names].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError(f"non-numeric, missing or non-finite values in rows {_bad_rows(~np.isfinite(values))}")
        return values

    def _features(self, frame: pd.DataFrame) -> np.ndarray:
        return self._numbers(frame, self.meta["feature_names"], "feature").astype(np.float32)

    def _pixels(self, frame: pd.DataFrame) -> np.ndarray:
        pre = self.meta["preprocessing"]
        values = self._numbers(frame, pixel_columns(self.meta), "pixel")
        if ((values < 0) | (values > 255)).any():
            raise ValueError(f"pixel values must be 0..255; rows {_bad_rows((values < 0) | (values > 255))}")
        pixels = values.round()  # whole values, as the service's pixel arrays and decoded images hold
        return pixels.reshape(len(values), pre["channels"], *pre["resize"]).astype(np.float32)

    def _classify(self, frame: pd.DataFrame) -> pd.DataFrame:
        if TEXT_COLUMN not in frame.columns:
            raise ValueError(f"missing the {TEXT_COLUMN!r} column (one text per row)")
        texts = frame[TEXT_COLUMN]
        max_chars = self.meta["tokenizer"]["max_chars"]
        empty = [i + 1 for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
        if empty:
            raise ValueError(f"empty or missing text in rows {empty[:10]}")
        long = [i + 1 for i, t in enumerate(texts) if len(t) > max_chars]
        if long:
            raise ValueError(f"texts over {max_chars} characters in rows {long[:10]}")
        encode, max_length = _encode(), self.meta["tokenizer"]["max_length"]
        scores, lengths, truncated = [], [], []
        for i in range(0, len(texts), CHUNK):
            enc = encode(self.tokenizer, list(texts[i : i + CHUNK]), max_length, pad="longest")
            scores.append(self.session.run(None, {self.input: enc.ids})[0])
            lengths.append(enc.lengths)
            truncated.append(enc.truncated)
        output = np.concatenate(scores) if scores else np.zeros((0, len(self.meta["classes"])), np.float32)
        none = np.zeros(0, np.int64)
        return self.answers(output).assign(
            tokens=np.concatenate(lengths or [none]), truncated=np.concatenate(truncated or [none.astype(bool)])
        )

    def answers(self, output: np.ndarray) -> pd.DataFrame:
        """One row per input: `prediction` (regression) or `label`, `probability` and `probability.<class>`."""
        if self.meta["objective"] == "regression":
            return pd.DataFrame({"prediction": output[:, 0].astype(np.float64)})
        classes = self.meta["classes"]
        best = output.argmax(axis=1) if len(output) else np.zeros(0, int)
        answer = {"label": [classes[k] for k in best], "probability": output[np.arange(len(best)), best]}
        answer |= {f"probability.{c}": output[:, i] for i, c in enumerate(classes)}
        return pd.DataFrame(answer)


def _load_pyfunc(path: str) -> RowsModel:
    """MLflow's pyfunc entry point: `path` is the model's data file (model.onnx)."""
    return RowsModel(path)
