"""Batch inference from the registry (`dlpipe predict TASK --input ... --output out.csv`), with a progress bar:
- tabular tasks: a CSV of raw feature rows;
- image tasks: a folder of PNG/JPEG images, or a CSV of one image per row as 0..255 pixel columns pixel0, pixel1,
  ... (the MLflow model's input, components/release/pyfunc_onnx.py);
- text classification tasks: a CSV with a `text` column.

The model, its meta.json, its tokenizer and the input checks are the HTTP service's own (serving/bundle.py,
serving/schemas.py), so a row gets the answer `POST /predict` or `/classify` gives it. Every input is checked
before the first is scored, and the output CSV is written whole or not at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import TypeAdapter, ValidationError
from tqdm import tqdm

from components.core.errors import DataError
from components.core.io import atomic_write
from components.core.tokens import encode
from components.data.images import IMAGE_SUFFIXES, ImageError
from components.release.pyfunc_onnx import TEXT_COLUMN, pixel_columns
from serving import schemas
from serving.bundle import bundle_tokenizer, load_bundle
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
    meta, source = bundle.meta, Path(source)
    if meta.kind == "tabular":
        keys, x = _tabular(source, meta)
    elif meta.kind == "image":
        keys, x = _pixel_rows(source, meta) if source.is_file() else _images(source, meta)
    elif meta.kind == "text" and meta.classes:
        keys, x = _texts(source, meta), None
    else:
        raise DataError(f"dlpipe predict scores tabular, image and text classification tasks; {task} is {meta.kind}")
    tokenizer = bundle_tokenizer(bundle) if x is None else None
    session = make_session(bundle)
    chunks = range(0, len(keys), CHUNK)
    outputs, encoded = [], []
    for i in tqdm(chunks, desc=f"{task}: {len(keys)} rows", unit="batch", disable=not progress):
        if tokenizer is not None:  # texts: each chunk padded to its longest, as the service pads a batch
            texts = list(keys[TEXT_COLUMN].iloc[i : i + CHUNK])
            encoded.append(encode(tokenizer, texts, meta.tokenizer["max_length"], pad="longest"))
        feed = encoded[-1].ids if tokenizer is not None else x[i : i + CHUNK]
        outputs.append(session.run([meta.output.name], {meta.input.name: feed})[0])
    scores = np.concatenate(outputs) if outputs else np.zeros((0, len(meta.classes or [0])), np.float32)
    answers = pd.concat([keys.reset_index(drop=True), _answers(scores, meta)], axis=1)
    if encoded:  # what `POST /classify` says besides the label: tokens read, and whether the end was cut
        tokens = np.concatenate([e.lengths for e in encoded])
        answers = answers.assign(tokens=tokens, truncated=np.concatenate([e.truncated for e in encoded]))
    atomic_write(Path(output), lambda tmp: answers.to_csv(tmp, index=False))
    return answers


def _tabular(path: Path, meta: Any) -> tuple[pd.DataFrame, np.ndarray]:
    """The CSV's rows (kept as the output's first columns) and the model input, each row checked as the service
    checks a record (named features, finite floats)."""
    frame = _read_csv(path, f"tabular tasks take a CSV with columns {', '.join(meta.feature_names)}")
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


def _read_csv(path: Path, what: str, **options: Any) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: not a file; {what}")
    try:
        return pd.read_csv(path, **options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read as CSV: {err}") from err


def _pixel_rows(path: Path, meta: Any) -> tuple[pd.DataFrame, np.ndarray]:
    """A CSV of one image per row (0..255 pixel columns), each checked as the service checks a JSON image."""
    names = pixel_columns(meta.model_dump())
    frame = _read_csv(path, "image tasks take a folder of PNG/JPEG files or a CSV of pixel columns")
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing pixel columns {missing[0]} ... ({len(missing)} of {len(names)} missing)")
    values = frame[names].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    pre = meta.preprocessing
    pixels = []
    for i, row in enumerate(values.reshape(len(values), pre["channels"], *pre["resize"])):
        try:
            pixels.append(schemas.image_from_array(row, meta))
        except ImageError as err:
            raise DataError(f"{path}: row {i + 1}: {err}") from None
    x = np.concatenate(pixels) if pixels else np.zeros((0, pre["channels"], *pre["resize"]), np.float32)
    return frame.drop(columns=names), x


def _texts(path: Path, meta: Any) -> pd.DataFrame:
    """A CSV with a `text` column, each text checked as the service checks one (not empty, within max_chars)."""
    # a text is a string as written ("NA" is a text; an empty cell an empty one, refused below)
    options = {"dtype": {TEXT_COLUMN: str}, "keep_default_na": False}
    frame = _read_csv(path, f"text tasks take a CSV with a {TEXT_COLUMN!r} column", **options)
    if TEXT_COLUMN not in frame.columns:
        raise DataError(f"{path}: no {TEXT_COLUMN!r} column (one text per row)")
    check = TypeAdapter(schemas.text_type(meta))
    for i, text in enumerate(frame[TEXT_COLUMN]):
        try:
            check.validate_python(text)
        except ValidationError as err:
            raise DataError(f"{path}: row {i + 1}: {err.errors()[0]['msg']}") from None
    return frame


def _images(folder: Path, meta: Any) -> tuple[pd.DataFrame, np.ndarray]:
    """The folder's PNG/JPEG files (sorted, searched recursively) decoded and normalised as the service does."""
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder or a CSV; image tasks take a folder of PNG/JPEG files or pixel rows")
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
