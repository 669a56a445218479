"""What the sequence services share, without BentoML: request models built from meta.json, the model input
built from valid requests (serving/guard.py answers 415 / 400 for non-JSON or non-UTF-8 bodies).

Forecast (`POST /forecast`): each item is `{"history": [v1, ..., vn]}`, raw values oldest first. The model
reads the last `window` values (meta.json `series.window`, its minimum history); a longer history is
accepted and its start unused. Too short, non-numbers, NaN / Infinity / null, or values that overflow
float32 after scaling are refused (400, naming the item and the problem).

Classify (`POST /classify`): each item is a text. Empty (or whitespace-only) texts and texts over
`tokenizer.max_chars` characters are refused (400). Within that, the tokens are truncated by the
tokenizer's documented rule (meta.json `tokenizer.truncation`: the start is kept) and the answer says
`truncated: true`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from components.core.contract import TaskMeta

FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_HISTORY = 10_000  # values per series
MAX_ITEMS = 256  # series or texts per request

Finite = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class Forecast(BaseModel):
    forecast: list[float] = Field(description="the next H values, in the series' units, nearest first")
    horizon: int
    history_used: int = Field(description="values of the history the model read (the most recent ones)")


class Classification(BaseModel):
    label: str = Field(description="the most probable class")
    probability: float = Field(description="probability of `label`")
    probabilities: dict[str, float]
    tokens: int = Field(description="tokens the model read, [CLS] and [SEP] included")
    truncated: bool = Field(description="the text had more tokens than max_length; its end was dropped")


def history_model(meta: TaskMeta) -> type[BaseModel]:
    """`{"history": [...]}` with meta.json's minimum length and a float32 range check after scaling."""
    window = meta.series["window"]
    mean, scale = meta.scaler["mean"][0], meta.scaler["scale"][0]

    def check(values: list[float]) -> list[float]:
        if len(values) < window:
            raise ValueError(f"history has {len(values)} values; this model needs at least {window} (its window)")
        if np.any(np.abs((np.asarray(values[-window:]) - mean) / scale) > FLOAT32_MAX):
            raise ValueError("history values are out of range for the model (float32 overflow after scaling)")
        return values

    History = Annotated[list[Finite], Field(max_length=MAX_HISTORY), AfterValidator(check)]
    example = [round(mean, 3)] * window

    class Series(BaseModel):
        model_config = ConfigDict(extra="forbid")
        history: History = Field(description=f"raw values, oldest first; at least {window}", examples=[example])

    return Series


def forecast_input(items: Sequence[Any], meta: TaskMeta) -> np.ndarray:
    """The last `window` values of each history, scaled as in training: float32 [N, window, 1]."""
    window = meta.series["window"]
    mean, scale = meta.scaler["mean"][0], meta.scaler["scale"][0]
    raw = np.array([item.history[-window:] for item in items], dtype=np.float64)
    return ((raw - mean) / scale).astype(np.float32)[..., None]


def text_type(meta: TaskMeta) -> Any:
    """A text within meta.json's max_chars that is not empty or whitespace only."""
    max_chars = meta.tokenizer["max_chars"]

    def check(text: str) -> str:
        if not text.strip():
            raise ValueError("empty text (nothing but whitespace) cannot be classified")
        if len(text) > max_chars:
            raise ValueError(f"text of {len(text)} characters is over the limit of {max_chars}")
        return text

    return Annotated[str, Field(strict=True, examples=["a wonderful, moving film"]), AfterValidator(check)]


def classify_output(probabilities: np.ndarray, lengths: np.ndarray, truncated: np.ndarray, meta: TaskMeta):
    classes = meta.classes
    best = probabilities.argmax(axis=1)
    return [
        Classification(
            label=classes[k],
            probability=float(row[k]),
            probabilities=dict(zip(classes, row.tolist(), strict=True)),
            tokens=int(n),
            truncated=bool(cut),
        )
        for row, k, n, cut in zip(probabilities, best, lengths, truncated, strict=True)
    ]
