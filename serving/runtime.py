"""What every served task shares: load a model bundle (registry or local export), open an ONNX Runtime
session on explicitly chosen providers, and turn meta.json into request validation and response shaping.

Nothing here imports BentoML, so the helpers are testable without a server.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.responses import JSONResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from components import images
from components.io import read_json

log = logging.getLogger(__name__)

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_IMAGES = 256  # per JSON request
PLAYGROUND = Path(__file__).parent / "playground"


@dataclass(frozen=True)
class Bundle:
    """A servable model: the ONNX bytes (no temp files left behind), its meta.json, and where it came from."""

    onnx: bytes
    meta: dict[str, Any]
    source: str
    files: dict[str, bytes] | None = None  # token models' attention/embeddings.onnx; text tasks' tokenizer.json


def _extra_files(folder: Path) -> dict[str, bytes]:
    from components.register import EXTRA_GRAPHS

    found = {name: sorted(Path(folder).rglob(name)) for name in (*EXTRA_GRAPHS, "tokenizer.json")}
    return {name: paths[0].read_bytes() for name, paths in found.items() if paths}


def load_bundle(task: str, model_uri: str | None = None, model_dir: str | Path | None = None) -> Bundle:
    """Load `model_dir` (an artifacts/<task> folder) or `model_uri` (default `models:/<task>@champion`)."""
    if model_uri and model_dir:
        raise ValueError("give a model URI or a model folder, not both")
    if model_dir:
        folder = Path(model_dir)
        meta = read_json(folder / "data" / "meta.json")
        bundle = Bundle((folder / "model.onnx").read_bytes(), meta, str(folder), _extra_files(folder))
    else:
        from components.register import fetch_model

        uri = model_uri or f"models:/{task}@champion"
        with tempfile.TemporaryDirectory(prefix="dlpipe-serve-") as tmp:
            path, meta = fetch_model(uri, Path(tmp))
            bundle = Bundle(path.read_bytes(), meta, uri, _extra_files(Path(tmp)))
    if bundle.meta.get("task") != task:
        raise ValueError(f"{bundle.source} holds task {bundle.meta.get('task')!r}, not {task!r}")
    return bundle


def bundle_tokenizer(bundle: Bundle) -> Any:
    """The bundle's tokenizer (tokenizers.Tokenizer), padding and truncation off: `encode` owns both."""
    from tokenizers import Tokenizer

    text = (bundle.files or {}).get("tokenizer.json")
    if text is None:
        raise ValueError(f"{bundle.source}: no tokenizer.json in this model bundle")
    tok = Tokenizer.from_str(text.decode("utf-8"))
    tok.no_padding()
    tok.no_truncation()
    return tok


def bundle_from_env(default_task: str = "tabular") -> Bundle:
    """The bundle picked by DLPIPE_TASK and DLPIPE_MODEL_URI / DLPIPE_MODEL_DIR (what `dlpipe serve` sets)."""
    task = os.environ.get("DLPIPE_TASK") or default_task
    return load_bundle(task, os.environ.get("DLPIPE_MODEL_URI"), os.environ.get("DLPIPE_MODEL_DIR"))


def choose_providers() -> list[str]:
    """CUDA only when a GPU is really usable: onnxruntime-gpu lists CUDA even without one, then falls back
    noisily. torch is imported only in that case, to ask the driver."""
    import onnxruntime as ort

    if CUDA in ort.get_available_providers():
        import torch

        if torch.cuda.is_available():
            return [CUDA, CPU]
    return [CPU]


def make_session(bundle: Bundle, threads: int | None = None, output: str | None = None) -> Any:
    """An InferenceSession whose input/output names are checked against meta.json at start-up.

    `threads` defaults to $DLPIPE_ORT_THREADS or 1: small models gain nothing from more, and the HTTP
    server needs the remaining cores. `output` opens the bundle's graph of that name instead of model.onnx
    (attention, embeddings).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or int(os.environ.get("DLPIPE_ORT_THREADS", "1"))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    providers = choose_providers()
    graph = bundle.onnx if output is None else (bundle.files or {}).get(f"{output}.onnx")
    if graph is None:
        raise ValueError(f"{bundle.source}: no {output}.onnx in this bundle; export the model again")
    session = ort.InferenceSession(graph, sess_options=opts, providers=providers)
    names = {v.name for v in session.get_inputs()}, {v.name for v in session.get_outputs()}
    wanted = bundle.meta["input"]["name"], output or bundle.meta["output"]["name"]
    if wanted[0] not in names[0] or wanted[1] not in names[1]:
        raise ValueError(f"{bundle.source}: ONNX graph has inputs {names[0]}, outputs {names[1]}; meta wants {wanted}")
    log.info("ONNX Runtime session on %s (asked for %s)", session.get_providers(), providers)
    return session


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
        """The model input: records scaled as prepare scaled the training data, float32 [rows, features]."""
        mean, scale = cls.scaler
        return ((np.stack([r.raw() for r in records]) - mean) / scale).astype(np.float32)

    @model_validator(mode="after")
    def _fits_float32(self) -> FeatureRecord:
        mean, scale = self.scaler
        too_big = np.abs((self.raw() - mean) / scale) > FLOAT32_MAX
        if too_big.any():
            aliases = [f.alias for f in type(self).model_fields.values()]
            names = ", ".join(name for name, bad in zip(aliases, too_big, strict=True) if bad)
            raise ValueError(f"out of range for the model (float32 overflow after scaling): {names}")
        return self


def record_model(meta: dict[str, Any]) -> type[FeatureRecord]:
    """A pydantic model with one required finite float per feature, named as in meta.json (aliases keep
    names like "mean radius" or "json" from clashing with Python or pydantic), the training mean as the
    OpenAPI example."""
    mean = np.asarray(meta["scaler"]["mean"], dtype=np.float64)
    scale = np.asarray(meta["scaler"]["scale"], dtype=np.float64)
    fields: dict[str, Any] = {
        f"f{i}": (Finite, Field(alias=name, examples=[round(float(m), 4)]))
        for i, (name, m) in enumerate(zip(meta["feature_names"], mean, strict=True))
    }
    model = create_model(f"{_camel(meta['task'])}Record", __base__=FeatureRecord, **fields)
    model.scaler = (mean, scale)
    return model


class ClassPrediction(BaseModel):
    label: str = Field(description="the most probable class")
    probability: float = Field(description="probability of `label`")
    probabilities: dict[str, float] = Field(description="probability per class")


class RegressionPrediction(BaseModel):
    prediction: float = Field(description="predicted value in the target's raw units")


def prediction_model(meta: dict[str, Any]) -> type[ClassPrediction] | type[RegressionPrediction]:
    return RegressionPrediction if meta["objective"] == "regression" else ClassPrediction


def decode(output: np.ndarray, meta: dict[str, Any]) -> list[ClassPrediction] | list[RegressionPrediction]:
    """Per-row answers from the model output: class probabilities [rows, classes], or values [rows, 1]."""
    if meta["objective"] == "regression":
        return [RegressionPrediction(prediction=float(v)) for v in output[:, 0]]
    classes = meta["classes"]
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


def image_from_upload(data: bytes, meta: dict[str, Any]) -> np.ndarray:
    """PNG/JPEG bytes -> model input [1, C, H, W]: decoded safely, converted, resized, normalised as in training.

    Raises images.ImageError naming the problem (not an image, truncated, too large, wrong channels)."""
    pre = meta["preprocessing"]
    pixels = images.to_array(images.decode(data), pre["resize"][0], pre["grayscale"])  # uint8 (C, H, W)
    return images.normalise(pixels[None], pre)


def image_from_array(array: Any, meta: dict[str, Any]) -> np.ndarray:
    """0..255 pixel values [H, W] (1 channel), [C, H, W] or [N, C, H, W] -> model input [N, C, H, W].

    Another size is resized with the same rule as uploads; another channel count is an ImageError."""
    pre = meta["preprocessing"]
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
    return images.normalise(pixels, pre)


def _resize(pixels: np.ndarray, mode: str, size: list[int]) -> np.ndarray:
    from PIL import Image

    image = Image.fromarray(pixels[0] if mode == "L" else pixels.transpose(1, 2, 0), mode)
    return images.to_array(image, size[0], mode == "L")


def top_k(output: np.ndarray, meta: dict[str, Any], k: int) -> list[list[TopClass]]:
    """The k most probable classes of each row of [N, classes] probabilities, most probable first."""
    classes = meta["classes"]
    order = np.argsort(-output, axis=1, kind="stable")[:, : max(1, min(k, len(classes)))]
    return [
        [TopClass(label=classes[j], index=int(j), probability=float(row[j])) for j in best]
        for row, best in zip(output, order, strict=True)
    ]


def mount_playground(app: Starlette) -> Starlette:
    """Serve the static playground page (serving/playground/, no build step) at /playground/ beside `app`'s
    routes; the page calls this service's own HTTP API."""
    app.mount("/playground", StaticFiles(directory=PLAYGROUND, html=True), name="playground")
    return app


class JSONOnly:
    """BentoML parses a body of any unknown Content-Type as JSON; answer 415 instead of guessing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            ctype = Headers(scope=scope).get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                body = {"error": f"Content-Type must be application/json, not {ctype or 'missing'!r}"}
                await JSONResponse(body, status_code=415)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class FormGuard:
    """Starlette refuses a malformed multipart/form-data body with a 400 HTTPException, which BentoML turns
    into a 500: parse such bodies here first and answer 400 naming the problem; a good body is replayed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope) if scope["type"] == "http" else Headers()
        if not headers.get("content-type", "").lower().startswith("multipart/form-data"):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        while not messages or messages[-1].get("more_body", False):
            messages.append(await receive())
            if messages[-1]["type"] != "http.request":  # the client left: let the app see it
                break
        body = b"".join(m.get("body", b"") for m in messages)

        async def chunks():
            yield body

        try:
            await (await MultiPartParser(headers, chunks()).parse()).close()
        except MultiPartException as err:
            detail = f"{err.message} ({err.__cause__})" if err.__cause__ else err.message
            await JSONResponse({"error": f"malformed multipart/form-data body: {detail}"}, status_code=400)(
                scope, receive, send
            )
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)
