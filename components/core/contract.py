"""The task contract: meta.json, written by prepare and read by every later step and by serving.

One typed model, `TaskMeta`, with a `kind` saying what the task's examples are. Evaluation, export and serving
pick their behaviour from registries keyed by `kind`; none of them guesses it from which keys exist or from the
task's name. Nested blocks (a tokenizer's settings, a series' spans) stay plain mappings: they are documented
where prepare writes them and read by the one module of their kind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from components.core.errors import DataError
from components.core.io import read_json, write_json

META_FILE = "meta.json"
SEQUENCE_OBJECTIVES = ("causal_lm", "masked_lm", "seq2seq")  # kind tokens: a vocabulary distribution per position

Kind = Literal["tabular", "image", "series", "text", "tokens"]
KINDS: tuple[str, ...] = Kind.__args__  # type: ignore[attr-defined]
# tabular: rows of named numeric features          image: uint8 [N, C, H, W] + normalisation
# series: windows of one time series (forecasting)  text: labelled texts as token ids (classification)
# tokens: token sequences that are their own targets (causal_lm, masked_lm, seq2seq)


class TensorSpec(BaseModel):
    """One model input or output: its ONNX name, dtype and shape (None = a dynamic axis)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    dtype: str = "float32"
    shape: list[int | None]


class TaskMeta(BaseModel):
    """meta.json: what a prepared task is, and everything needed to turn raw input into model input."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Kind
    task: str
    dataset: str
    objective: Literal["binary", "multiclass", "regression", "causal_lm", "masked_lm", "seq2seq"]
    splits: dict[str, int] = Field(description="examples per split: train, val, test")
    data_sha256: str = Field(description="hash of the raw data the splits were made from")
    input: TensorSpec
    output: TensorSpec
    classes: list[str] | None = Field(None, description="class names in output order (classifiers)")
    target: str | None = Field(None, description="the raw data's target column")
    feature_names: list[str] | None = Field(None, description="tabular: the features in model-input order")
    scaler: dict[str, list[float]] | None = Field(None, description="tabular, series: input (x - mean) / scale")
    target_scaler: dict[str, float] | None = Field(None, description="regression: target (y - mean) / scale")
    preprocessing: dict[str, Any] | None = Field(None, description="image: resize, channels, scale, mean, std")
    horizon: int | None = Field(None, description="series: steps forecast at once")
    series: dict[str, Any] | None = Field(None, description="series: frequency, window, spans, baseline period")
    text_column: str | None = Field(None, description="text: the raw data's text column")
    tokenizer: dict[str, Any] | str | None = Field(
        None, description="text, masked_lm: tokenizer.json settings; causal_lm, seq2seq: how ids are made"
    )
    word2vec: dict[str, Any] | None = Field(None, description="text: skip-gram vectors trained by prepare")
    vocab: list[str] | None = Field(None, description="tokens: the id -> token table (causal_lm, seq2seq)")
    special_ids: dict[str, int] | None = Field(None, description="seq2seq: [PAD], [BOS], [EOS] ids")
    model_inputs: dict[str, int] | None = Field(None, description="tokens: sizes the model is built with")
    masking: dict[str, Any] | None = Field(None, description="masked_lm: the masking rule of the splits")
    text: dict[str, int] | None = Field(None, description="causal_lm: characters in the train / held-out parts")

    def write(self, out_dir: Path) -> None:
        write_json(Path(out_dir) / META_FILE, self.model_dump(mode="json"))


def load_meta(data_dir: Path) -> TaskMeta:
    """Read `data_dir/meta.json`; a missing, older or malformed contract is a DataError naming the fix."""
    path = Path(data_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the prepare step first")
    return parse_meta(read_json(path), str(path))


def parse_meta(raw: dict[str, Any], where: str) -> TaskMeta:
    """Validate a meta.json mapping (from a file, the registry or a Bento) into the contract."""
    if "kind" not in raw:
        raise DataError(f"{where}: meta.json has no `kind` (written by an older prepare): re-run `dlpipe prepare`")
    try:
        return TaskMeta.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise DataError(f"{where}: meta.json does not match the task contract: {problems}") from None
