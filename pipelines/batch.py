"""Batch inference from the registry (`dlpipe predict TASK --input ... --output out.csv`): a CSV of raw feature rows
(tabular tasks) or a folder of PNG/JPEG images (image tasks) scored by the registered model, with a progress bar.

The model, its meta.json and the input checks are the HTTP service's own (serving/bundle.py, serving/schemas.py),
so a row gets the answer `POST /predict` gives it. Every input is checked before the first is scored, and the
output CSV is written whole or not at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError
from tqdm import tqdm

from components.core.errors import DataError
from components.core.io import atomic_write
from components.data.images import IMAGE_SUFFIXES
from serving import schemas
from serving.bundle import load_bundle
from serving.session import make_session

CHUNK = 256  # rows per ONNX Runtime call


def predict(
    task: str,
    source: Path,
    output: Path,
    model_uri: str | None = None,
    model_dir: Path | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Score `source` with the task's model (default `models:/<task>@champion`) and write `output` (CSV)."""
    bundle = load_bundle(task, model_uri, model_dir)
    meta = bundle.meta
    if meta.kind == "tabular":
        keys, x = _tabular(Path(source), meta)
    elif meta.kind == "image":
        keys, x = _images(Path(source), meta)
    else:
        raise DataError(f"dlpipe predict scores tabular CSVs and image folders; task {task} is {meta.kind}: use serve")
    session = make_session(bundle)
    chunks = range(0, len(x), CHUNK)
    outputs = [
        session.run([meta.output.name], {meta.input.name: x[i : i + CHUNK]})[0]
        for i in tqdm(chunks, desc=f"{task}: {len(x)} rows", unit="batch", disable=not progress)
    ]
    scores = np.concatenate(outputs) if outputs else np.zeros((0, len(meta.classes or [0])), np.float32)
    answers = pd.concat([keys.reset_index(drop=True), _answers(scores, meta)], axis=1)
    atomic_write(Path(output), lambda tmp: answers.to_csv(tmp, index=False))
    return answers


def _tabular(path: Path, meta: Any) -> tuple[pd.DataFrame, np.ndarray]:
    """The CSV's rows (kept as the output's first columns) and the model input, each row checked as the service
    checks a record (named features, finite floats)."""
    if not path.is_file():
        raise DataError(f"{path}: not a file; tabular tasks take a CSV with columns {', '.join(meta.feature_names)}")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read as CSV: {err}") from err
    missing = [name for name in meta.feature_names if name not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing feature columns {', '.join(missing)}")
    features = frame[meta.feature_names].apply(pd.to_numeric, errors="coerce")
    text = features.isna() & frame[meta.feature_names].notna()  # a cell that is not a number
    if text.any().any():
        row, column = next((r, c) for r, c in zip(*np.nonzero(text.to_numpy()), strict=True))
        name = meta.feature_names[column]
        raise DataError(f"{path}: row {row + 1}: {name}: not a number: {frame[name].iloc[row]!r}")
    record = schemas.record_model(meta)
    records = []
    for i, row in enumerate(features.to_dict(orient="records")):
        try:
            records.append(record.model_validate(row))
        except ValidationError as err:
            problems = "; ".join(f"{e['loc'][-1]}: {e['msg']}" for e in err.errors())
            raise DataError(f"{path}: row {i + 1}: {problems}") from None
    x = record.matrix(records) if records else np.zeros((0, len(meta.feature_names)), np.float32)
    return frame, x


def _images(folder: Path, meta: Any) -> tuple[pd.DataFrame, np.ndarray]:
    """The folder's PNG/JPEG files (sorted, searched recursively) decoded and normalised as the service does."""
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder; image tasks take a folder of PNG/JPEG files")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no PNG/JPEG files")
    pixels = []
    for f in files:
        try:
            pixels.append(schemas.image_from_upload(f.read_bytes(), meta))
        except DataError as err:
            raise DataError(f"{f}: {err}") from None
    return pd.DataFrame({"file": [str(f.relative_to(folder)) for f in files]}), np.concatenate(pixels)


def _answers(scores: np.ndarray, meta: Any) -> pd.DataFrame:
    """One row per input: `prediction` (regression) or `label`, `probability` and `probability.<class>`."""
    if meta.objective == "regression":
        return pd.DataFrame({"prediction": scores[:, 0].astype(np.float64)})
    best = scores.argmax(axis=1) if len(scores) else np.zeros(0, int)
    answer = {"label": [meta.classes[k] for k in best], "probability": scores[np.arange(len(best)), best]}
    answer |= {f"probability.{c}": scores[:, i] for i, c in enumerate(meta.classes)}
    return pd.DataFrame(answer)
