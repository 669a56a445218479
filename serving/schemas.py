"""The request and response models every family derives from a task's meta.json, and the model input built
from valid requests. No BentoML: bench/naive_server.py serves the same validation without it.

Each request item is validated on its own, before BentoML joins it to an adaptive batch, so a bad item gets a
400 naming the problem and never fails its batch neighbours (serving/guard.py answers 415 / 400 for non-JSON
or non-UTF-8 bodies).

Tabular (`POST /predict`): each record holds every feature named in meta.json, as a finite JSON number that is
still finite in float32 after scaling; unknown fields are refused.

Images (`POST /predict`, `POST /predict_image`): pixel arrays or PNG/JPEG uploads, preprocessed exactly as
meta.json's `preprocessing` says (resized, converted; the ONNX graph normalises, as in training).

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
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    PrivateAttr,
    create_model,
    model_validator,
)

from components.core.contract import TaskMeta
from components.data import images

FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_IMAGES = 256  # per JSON request (items)
MAX_HISTORY = 10_000  # values per series
MAX_ITEMS = 256  # series or texts per request

Finite = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class FeatureRecord(BaseModel):
    """One row of named raw features; `record_model` derives a task's subclass from meta.json.

    Validation runs per request, before BentoML joins the request to a batch, so one bad row can never
    fail a neighbour's request. Unknown fields are rejected; values must be JSON numbers (no strings or
    booleans), finite, and still finite in float32 after scaling (1e39 is a finite float64 but would
    reach the model as inf and come back as NaN).
    """

    model_config = ConfigDict(extra="forbid")
    scaler: ClassVar[tuple[np.ndarray, np.ndarray]]

    def raw(self) -> np.ndarray:
        """The raw values in meta.json's feature order (fields are declared in that order)."""
        return np.fromiter(self.__dict__.values(), dtype=np.float64, count=len(self.__dict__))

    @classmethod
    def matrix(cls, records: Sequence[FeatureRecord]) -> np.ndarray:
        """The model input: raw values, float32 [rows, features] (the graph applies prepare's scaling)."""
        return np.stack([r.raw() for r in records]).astype(np.float32)

    @model_validator(mode="after")
    def _fits_float32(self) -> FeatureRecord:
        mean, scale = self.scaler
        raw = self.raw()
        too_big = (np.abs(raw) > FLOAT32_MAX) | (np.abs((raw - mean) / scale) > FLOAT32_MAX)
        if too_big.any():
            aliases = [f.alias for f in type(self).model_fields.values()]
            names = ", ".join(name for name, bad in zip(aliases, too_big, strict=True) if bad)
            raise ValueError(f"out of range for the model (float32 overflow, raw or after scaling): {names}")
        return self


def record_model(meta: TaskMeta) -> type[FeatureRecord]:
    """A pydantic model with one required finite float per feature, named as in meta.json (aliases keep
    names like "mean radius" or "json" from clashing with Python or pydantic), the training mean as the
    OpenAPI example."""
    mean = np.asarray(meta.scaler["mean"], dtype=np.float64)
    scale = np.asarray(meta.scaler["scale"], dtype=np.float64)
    fields: dict[str, Any] = {
        f"f{i}": (Finite, Field(alias=name, examples=[round(float(m), 4)]))
        for i, (name, m) in enumerate(zip(meta.feature_names, mean, strict=True))
    }
    model = create_model(f"{_camel(meta.task)}Record", __base__=FeatureRecord, **fields)
    model.scaler = (mean, scale)
    return model


class ClassPrediction(BaseModel):
    label: str = Field(description="the most probable class")
    probability: float = Field(description="probability of `label`")
    probabilities: dict[str, float] = Field(description="probability per class")


class RegressionPrediction(BaseModel):
    prediction: float = Field(description="predicted value in the target's raw units")


def prediction_model(meta: TaskMeta) -> type[ClassPrediction] | type[RegressionPrediction]:
    return RegressionPrediction if meta.objective == "regression" else ClassPrediction


def decode(output: np.ndarray, meta: TaskMeta) -> list[ClassPrediction] | list[RegressionPrediction]:
    """Per-row answers from the model output: class probabilities [rows, classes], or values [rows, 1]."""
    if meta.objective == "regression":
        return [RegressionPrediction(prediction=float(v)) for v in output[:, 0]]
    classes = meta.classes
    best = output.argmax(axis=1)
    return [
        ClassPrediction(
            label=classes[k], probability=float(row[k]), probabilities=dict(zip(classes, row.tolist(), strict=True))
        )
        for row, k in zip(output, best, strict=True)
    ]


def _camel(task: str) -> str:
    return "".join(part.capitalize() for part in task.replace("-", "_").split("_"))


# --- images: the preprocessing meta.json records, applied to uploads and JSON arrays ------------------------


class TopClass(BaseModel):
    label: str = Field(description="class name")
    index: int = Field(description="class index in meta.json's classes")
    probability: float


def image_from_upload(data: bytes, meta: TaskMeta) -> np.ndarray:
    """PNG/JPEG bytes -> model input [1, C, H, W]: decoded safely, converted, resized; 0..255 float32 pixels (the
    graph normalises them as in training).

    Raises images.ImageError naming the problem (not an image, truncated, too large, wrong channels)."""
    pre = meta.preprocessing
    pixels = images.to_array(images.decode(data), pre["resize"][0], pre["grayscale"])  # uint8 (C, H, W)
    return pixels[None].astype(np.float32)


def image_from_array(array: Any, meta: TaskMeta) -> np.ndarray:
    """0..255 pixel values [H, W] (1 channel), [C, H, W] or [N, C, H, W] -> model input [N, C, H, W].

    Another size is resized with the same rule as uploads; another channel count is an ImageError."""
    pre = meta.preprocessing
    channels, size = pre["channels"], pre["resize"]
    x = np.asarray(array, dtype=np.float64)
    if x.ndim == 2 and channels == 1:
        x = x[None]
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or 0 in x.shape:
        raise images.ImageError(f"expected pixels shaped [H, W], [C, H, W] or [N, C, H, W], got {list(x.shape)}")
    if x.shape[1] != channels:
        raise images.ImageError(f"the model expects {channels} channel(s), got {x.shape[1]} (shape {list(x.shape)})")
    if len(x) > MAX_IMAGES:
        raise images.ImageError(f"at most {MAX_IMAGES} images per request, got {len(x)}")
    if x.shape[2] * x.shape[3] > images.MAX_PIXELS:
        raise images.ImageError(f"images of {x.shape[3]}x{x.shape[2]} pixels are too large", status=413)
    if not np.isfinite(x).all() or x.min() < 0 or x.max() > 255:
        raise images.ImageError("pixel values must be finite numbers from 0 to 255")
    pixels = x.round().astype(np.uint8)
    if list(pixels.shape[2:]) != list(size):
        mode = "L" if channels == 1 else "RGB"
        pixels = np.stack([_resize(p, mode, size) for p in pixels])
    return pixels.astype(np.float32)


class ImageItem(BaseModel):
    """One image of a JSON request; `image_item_model` derives a task's subclass from meta.json. Checked and
    preprocessed on its own (as uploads are), before BentoML joins it to a batch: a bad image gets a 400
    naming the problem and never fails its batch neighbours."""

    model_config = ConfigDict(extra="forbid")
    meta: ClassVar[TaskMeta]
    pixels: list = Field(description="pixel values 0..255 shaped [H, W] (one channel) or [C, H, W]")
    top_k: PositiveInt = Field(3, description="how many classes to return")
    _x: np.ndarray = PrivateAttr()

    @property
    def x(self) -> np.ndarray:
        """The model input [1, C, H, W], preprocessed as in training."""
        return self._x

    @model_validator(mode="after")
    def _preprocess(self) -> ImageItem:
        try:
            x = image_from_array(self.pixels, self.meta)
        except images.ImageError as err:
            raise ValueError(str(err)) from None
        except (ValueError, TypeError, OverflowError) as err:  # OverflowError: an integer beyond float64
            raise ValueError(f"pixels: {err}") from None
        if len(x) != 1:
            raise ValueError("pixels: one image per item, shaped [H, W] or [C, H, W]; send more images as more items")
        self._x = x
        return self


def image_item_model(meta: TaskMeta) -> type[ImageItem]:
    """The task's ImageItem: its meta.json (preprocessing, classes), top_k up to the number of classes, and an
    all-black image as the example."""
    height, width = meta.preprocessing["resize"]
    plane = [[0] * width for _ in range(height)]
    example = plane if meta.preprocessing["channels"] == 1 else [plane] * meta.preprocessing["channels"]
    pixels = Field(description=ImageItem.model_fields["pixels"].description, examples=[example])
    top_k = Field(3, ge=1, le=len(meta.classes), description="how many classes to return")
    model = create_model(f"{_camel(meta.task)}Image", __base__=ImageItem, pixels=(list, pixels), top_k=(int, top_k))
    model.meta = meta
    return model


def _resize(pixels: np.ndarray, mode: str, size: list[int]) -> np.ndarray:
    from PIL import Image

    image = Image.fromarray(pixels[0] if mode == "L" else pixels.transpose(1, 2, 0), mode)
    return images.to_array(image, size[0], mode == "L")


def top_k(output: np.ndarray, meta: TaskMeta, k: int) -> list[list[TopClass]]:
    """The k most probable classes of each row of [N, classes] probabilities, most probable first."""
    classes = meta.classes
    order = np.argsort(-output, axis=1, kind="stable")[:, : max(1, min(k, len(classes)))]
    return [
        [TopClass(label=classes[j], index=int(j), probability=float(row[j])) for j in best]
        for row, best in zip(output, order, strict=True)
    ]


# --- series and texts: forecast histories, texts to classify ------------------------------------------


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
