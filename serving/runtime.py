"""What every served task shares: load a model bundle (registry alias or version, a local export, or the
BentoML model store inside a Bento), open an ONNX Runtime session on explicitly chosen providers with threads
that fit the machine, the per-task serving settings, and turn meta.json into request validation and response
shaping.

Nothing here imports BentoML at module level, so the helpers are testable without a server.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    PrivateAttr,
    TypeAdapter,
    create_model,
    model_validator,
)

from components.core.contract import TaskMeta, load_meta
from components.core.io import read_json
from components.data import images

log = logging.getLogger(__name__)

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_IMAGES = 256  # per JSON request (items)
BUNDLE_FILE = "bundle.json"  # source, version and metrics of a bundle saved to the BentoML model store
PACKED = Path(__file__).with_name("packed.json")  # in a Bento's code only: its task and model store tag
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2 CPU quota: "<quota> <period>" or "max <period>"
NVIDIA_DEVICES = Path("/dev/nvidia[0-9]*")  # a GPU's device node (the NVIDIA container toolkit mounts them)


@dataclass(frozen=True)
class Bundle:
    """A servable model: the ONNX bytes (no temp files left behind), its meta.json, where it came from, the
    registry version and the metrics it was registered with (empty when unknown)."""

    onnx: bytes
    meta: TaskMeta
    source: str
    files: dict[str, bytes] | None = None  # token models' attention/embeddings.onnx; text tasks' tokenizer.json
    version: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def _extra_files(folder: Path) -> dict[str, bytes]:
    from components.release.register import EXTRA_GRAPHS

    found = {name: sorted(Path(folder).rglob(name)) for name in (*EXTRA_GRAPHS, "tokenizer.json")}
    return {name: paths[0].read_bytes() for name, paths in found.items() if paths}


def load_bundle(
    task: str, model_uri: str | None = None, model_dir: str | Path | None = None, bento_model: str | None = None
) -> Bundle:
    """Load `model_dir` (an artifacts/<task> folder), `bento_model` (a BentoML model store tag, what a built
    Bento carries) or `model_uri` (`models:/<task>@<alias>` or `models:/<task>/<version>`; default
    `models:/<task>@champion`)."""
    if sum(x is not None for x in (model_uri, model_dir, bento_model)) > 1:
        raise ValueError("give one of a model URI, a model folder or a BentoML model tag")
    if model_dir:
        bundle = _local_bundle(Path(model_dir), task)
    elif bento_model:
        bundle = _store_bundle(bento_model)
    else:
        bundle = _registry_bundle(model_uri or f"models:/{task}@champion")
    if bundle.meta.task != task:
        raise ValueError(f"{bundle.source} holds task {bundle.meta.task!r}, not {task!r}")
    return bundle


def _local_bundle(folder: Path, task: str) -> Bundle:
    """An export folder; its metrics are evaluate's `metrics/<task>.json` two levels up (the repo layout), its
    version the one register wrote to registration.json, when those exist."""
    meta = load_meta(folder / "data")
    metrics_file = folder.parent.parent / "metrics" / f"{task}.json"
    registration = folder / "registration.json"
    version = read_json(registration).get("version") if registration.is_file() else None
    metrics = read_json(metrics_file) if metrics_file.is_file() else {}
    return Bundle((folder / "model.onnx").read_bytes(), meta, str(folder), _extra_files(folder), version, metrics)


def _registry_bundle(uri: str) -> Bundle:
    from components.release.register import fetch_model

    name, version, metrics = registered_version(uri)
    with tempfile.TemporaryDirectory(prefix="dlpipe-serve-") as tmp:  # that version, even if the alias moves now
        path, meta = fetch_model(f"models:/{name}/{version}", Path(tmp))
        onnx, files = path.read_bytes(), _extra_files(Path(tmp))
    return Bundle(onnx, meta, uri, files, version, metrics)


def registered_version(uri: str) -> tuple[str, str, dict[str, float]]:
    """The model name and version a `models:/name@alias` or `models:/name/N` URI points at now, and the test
    metrics its run logged at evaluation (evaluate logs them as `test_<metric>`)."""
    from components.core import tracking

    client = tracking.configure().MlflowClient()
    name, _, rest = uri.removeprefix("models:/").partition("/")
    if "@" in name:
        name, alias = name.split("@", 1)
        mv = client.get_model_version_by_alias(name, alias)
    else:
        mv = client.get_model_version(name, rest)
    run_metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
    return name, str(mv.version), {k.removeprefix("test_"): v for k, v in run_metrics.items() if k.startswith("test_")}


def _store_bundle(tag: str) -> Bundle:
    import bentoml

    folder = Path(bentoml.models.get(tag).path)
    saved = read_json(folder / BUNDLE_FILE)
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.name in saved["files"]}
    return Bundle(
        (folder / "model.onnx").read_bytes(),
        load_meta(folder),
        saved["source"],
        files,
        saved["version"],
        saved["metrics"],
    )


def save_to_store(bundle: Bundle, name: str) -> str:
    """Copy a bundle into the BentoML model store (what `bentoml build` packs into a Bento); return its tag."""
    import bentoml

    labels = {"task": bundle.meta.task, "version": bundle.version or "local"}
    with bentoml.models.create(name, labels=labels, metadata={"source": bundle.source}) as model:
        folder = Path(model.path)
        (folder / "model.onnx").write_bytes(bundle.onnx)
        (folder / "meta.json").write_text(bundle.meta.model_dump_json())
        for file_name, data in (bundle.files or {}).items():
            (folder / file_name).write_bytes(data)
        saved = {"source": bundle.source, "version": bundle.version, "metrics": bundle.metrics}
        (folder / BUNDLE_FILE).write_text(json.dumps(saved | {"files": sorted(bundle.files or {})}))
    return str(model.tag)


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
    """The bundle picked by DLPIPE_TASK and DLPIPE_MODEL_URI / DLPIPE_MODEL_DIR (what `dlpipe serve` sets),
    else the model a Bento was built with (serving/packed.json, written by `dlpipe serve build`)."""
    env = os.environ.get
    packed = read_json(PACKED) if PACKED.is_file() else {}
    task = env("DLPIPE_TASK") or packed.get("task") or default_task
    if env("DLPIPE_MODEL_URI") or env("DLPIPE_MODEL_DIR") or not packed:
        return load_bundle(task, env("DLPIPE_MODEL_URI"), env("DLPIPE_MODEL_DIR"))
    return load_bundle(task, bento_model=packed["model"])


def available_cores() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (a container's `--cpus`)."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = CPU_MAX.read_text().split()
    except (OSError, ValueError):
        return cores
    return cores if quota == "max" else max(1, min(cores, int(quota) // int(period)))


def ort_threads(workers: int = 1) -> int:
    """ONNX Runtime intra-op threads per process: $DLPIPE_ORT_THREADS, else half the usable cores shared by
    `workers` processes (at least 1, at most 4). The other half serves HTTP and JSON, which costs more than
    these small models; more threads than that only add synchronisation to batches this size."""
    return int(os.environ.get("DLPIPE_ORT_THREADS") or min(4, max(1, available_cores() // (2 * workers))))


class Settings(BaseModel):
    """How one task is served: its adaptive batching window and its per-request timeout."""

    model_config = ConfigDict(extra="forbid", strict=True)
    max_batch_size: PositiveInt = 256
    max_latency_ms: PositiveInt = 1000
    timeout_s: float = Field(30.0, gt=0)
    workers: PositiveInt | None = None  # HTTP worker processes of the task's own service; None: one per core

    def worker_count(self) -> int:
        """Python serves one request at a time per process: a light model's service needs a process per core
        to use the machine (measured on 2 cores: tabular 1,500 -> 2,200 req/s with a second worker)."""
        return self.workers or available_cores()


# Per family; $DLPIPE_SERVING (JSON, keyed by family or task, e.g. '{"fashion": {"max_latency_ms": 50}}') overrides.
SETTINGS: dict[str, Settings] = {
    "tabular": Settings(max_batch_size=1000, max_latency_ms=1000),
    "image": Settings(max_batch_size=MAX_IMAGES, max_latency_ms=1000),
    "forecast": Settings(max_batch_size=256, max_latency_ms=1000),
    "text": Settings(max_batch_size=256, max_latency_ms=1000),
    "decoder": Settings(timeout_s=120.0, workers=1),  # 1000 generated tokens rerun the window 1000 times
    "encoder": Settings(workers=1),
    "seq2seq": Settings(max_batch_size=256, max_latency_ms=1000),
}


def settings(task: str, family: str) -> Settings:
    """The family's settings with $DLPIPE_SERVING's family entry, then its task entry, applied on top
    (and $DLPIPE_TIMEOUT_S, one timeout for every task, last)."""
    overrides = TypeAdapter(dict[str, dict[str, Any]]).validate_json(os.environ.get("DLPIPE_SERVING") or "{}")
    merged = SETTINGS[family].model_dump() | overrides.get(family, {}) | overrides.get(task, {})
    if os.environ.get("DLPIPE_TIMEOUT_S"):
        merged["timeout_s"] = float(os.environ["DLPIPE_TIMEOUT_S"])
    return Settings.model_validate(merged)


def tracing() -> dict[str, Any]:
    """BentoML's OpenTelemetry settings: spans for no URL unless $DLPIPE_TRACING is set. BentoML makes a span
    per request even when nothing collects them (its default sample rate is 0): ~15% of a small model's
    request CPU. With DLPIPE_TRACING=1 it traces as its own configuration (exporter, sample rate) says."""
    return {} if os.environ.get("DLPIPE_TRACING") else {"excluded_urls": ".*"}


def choose_providers() -> list[str]:
    """CUDA only when a GPU is really usable: onnxruntime-gpu lists CUDA even without one, then falls back
    noisily. torch asks the driver (and loads the CUDA libraries ONNX Runtime needs), but only where an NVIDIA
    device node exists: importing it costs each serving process ~450 MB of memory."""
    import onnxruntime as ort

    if CUDA in ort.get_available_providers() and any(NVIDIA_DEVICES.parent.glob(NVIDIA_DEVICES.name)):
        import torch

        if torch.cuda.is_available():
            return [CUDA, CPU]
    return [CPU]


def make_session(bundle: Bundle, threads: int | None = None, output: str | None = None) -> Any:
    """An InferenceSession whose input/output names are checked against meta.json at start-up.

    `threads` defaults to `ort_threads()`. `output` opens the bundle's graph of that name instead of model.onnx
    (attention, embeddings).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or ort_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    providers = choose_providers()
    graph = bundle.onnx if output is None else (bundle.files or {}).get(f"{output}.onnx")
    if graph is None:
        raise ValueError(f"{bundle.source}: no {output}.onnx in this bundle; export the model again")
    session = ort.InferenceSession(graph, sess_options=opts, providers=providers)
    names = {v.name for v in session.get_inputs()}, {v.name for v in session.get_outputs()}
    wanted = bundle.meta.input.name, output or bundle.meta.output.name
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
    """PNG/JPEG bytes -> model input [1, C, H, W]: decoded safely, converted, resized, normalised as in training.

    Raises images.ImageError naming the problem (not an image, truncated, too large, wrong channels)."""
    pre = meta.preprocessing
    pixels = images.to_array(images.decode(data), pre["resize"][0], pre["grayscale"])  # uint8 (C, H, W)
    return images.normalise(pixels[None], pre)


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
    return images.normalise(pixels, pre)


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
        except (ValueError, TypeError) as err:
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
