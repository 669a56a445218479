"""Model bundles: what a served task is made of (model.onnx, its meta.json, and the extra graphs and tokenizer.json
it carries), loaded from the MLflow registry (an alias, default `champion`, or a pinned version), a local export
(artifacts/<task>), or the BentoML model store inside a Bento; and copied into that store for a Bento.

`describe` reads what a model source holds (its meta.json and the names of its extra files) without its graphs:
what the CLI and the gateway choose a family from before a service imports anything. MLflow and BentoML are
imported inside the functions that use them.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.core.contract import META_FILE, TaskMeta, load_meta
from components.core.errors import DataError, DlpipeError
from components.core.io import read_json

TOKENIZER = "tokenizer.json"  # text tasks' tokenizer, shipped beside meta.json
BUNDLE_FILE = "bundle.json"  # source, version and metrics of a bundle saved to the BentoML model store
PACKED = Path(__file__).with_name("packed.json")  # in a Bento's code only: its task and model store tag


class ModelNotFound(DlpipeError, LookupError):
    """No model where a task's model source points: no registered version, or no export in the folder."""


@dataclass(frozen=True)
class Contents:
    """What a model source holds, read without its graphs: meta.json, the names of the extra files it carries
    beside model.onnx (extra graphs, tokenizer.json), and where it is."""

    meta: TaskMeta
    carries: frozenset[str]
    source: str


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

    @property
    def carries(self) -> frozenset[str]:
        """The names of the extra files beside model.onnx."""
        return frozenset(self.files or {})


def extra_file_names() -> tuple[str, ...]:
    """The files a bundle may carry beside model.onnx: export's extra graphs (as register names them) and the
    tokenizer."""
    from components.release.register import EXTRA_GRAPHS

    return (*EXTRA_GRAPHS, TOKENIZER)


def _extra_paths(folder: Path) -> dict[str, Path]:
    found = {name: sorted(Path(folder).rglob(name)) for name in extra_file_names()}
    return {name: paths[0] for name, paths in found.items() if paths}


def _check_task(meta: TaskMeta, source: str, task: str) -> None:
    if meta.task != task:
        raise ValueError(f"{source} holds task {meta.task!r}, not {task!r}")


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
    _check_task(bundle.meta, bundle.source, task)
    return bundle


def describe(task: str, model_uri: str | None = None, model_dir: str | Path | None = None) -> Contents:
    """What `load_bundle(task, model_uri, model_dir)` would load, without downloading or reading its graphs.

    Raises ModelNotFound when the source holds no model, ValueError when it holds another task's."""
    if model_uri and model_dir:
        raise ValueError("give one of a model URI or a model folder")
    if model_dir:
        folder = Path(model_dir)
        if not (folder / "model.onnx").is_file() or not (folder / "data" / META_FILE).is_file():
            raise ModelNotFound(f"{folder}: no exported model (model.onnx and data/{META_FILE}); run the export step")
        contents = Contents(load_meta(folder / "data"), frozenset(_extra_paths(folder)), str(folder))
    else:
        contents = _registry_contents(model_uri or f"models:/{task}@champion")
    _check_task(contents.meta, contents.source, task)
    return contents


def _local_bundle(folder: Path, task: str) -> Bundle:
    """An export folder; its metrics are evaluate's `metrics/<task>.json` two levels up (the repo layout), its
    version the one register wrote to registration.json, when those exist."""
    meta = load_meta(folder / "data")
    metrics_file = folder.parent.parent / "metrics" / f"{task}.json"
    registration = folder / "registration.json"
    version = read_json(registration).get("version") if registration.is_file() else None
    metrics = read_json(metrics_file) if metrics_file.is_file() else {}
    files = {name: path.read_bytes() for name, path in _extra_paths(folder).items()}
    return Bundle((folder / "model.onnx").read_bytes(), meta, str(folder), files, version, metrics)


def _registry_bundle(uri: str) -> Bundle:
    from components.release.register import fetch_model

    name, version, metrics = registered_version(uri)
    with tempfile.TemporaryDirectory(prefix="dlpipe-serve-") as tmp:  # that version, even if the alias moves now
        path, meta = fetch_model(f"models:/{name}/{version}", Path(tmp))
        onnx = path.read_bytes()
        files = {name: p.read_bytes() for name, p in _extra_paths(Path(tmp)).items()}
    return Bundle(onnx, meta, uri, files, version, metrics)


def _model_version(uri: str) -> tuple[Any, Any]:
    """The MLflow client and the model version a `models:/name@alias` or `models:/name/N` URI points at now."""
    from mlflow.exceptions import MlflowException

    from components.core import tracking
    from components.core.secrets import mask

    client = tracking.configure().MlflowClient()
    name, _, rest = uri.removeprefix("models:/").partition("/")
    try:
        if "@" in name:
            name, alias = name.split("@", 1)
            return client, client.get_model_version_by_alias(name, alias)
        return client, client.get_model_version(name, rest)
    except MlflowException as err:
        where = mask(tracking.tracking_uri())  # a password in the URI is never shown
        raise ModelNotFound(f"{uri} is not in the registry at {where} ({err.error_code}); register it first") from None


def registered_version(uri: str) -> tuple[str, str, dict[str, float]]:
    """The model name and version a `models:/name@alias` or `models:/name/N` URI points at now, and the test
    metrics its run logged at evaluation (evaluate logs them as `test_<metric>`)."""
    client, mv = _model_version(uri)
    run_metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
    tested = {k.removeprefix("test_"): v for k, v in run_metrics.items() if k.startswith("test_")}
    return mv.name, str(mv.version), tested


def _registry_contents(uri: str) -> Contents:
    """meta.json and the extra file names of a registered version: register logs them as the model's extra files
    (MLflow keeps those under `extra_files/`); only meta.json is downloaded."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    _, mv = _model_version(uri)
    repo = get_artifact_repository(f"models:/{mv.name}/{mv.version}")
    names = {Path(info.path).name for info in repo.list_artifacts("extra_files")}
    if META_FILE not in names:
        raise ModelNotFound(f"{uri}: no {META_FILE} among the registered model's files; register it again")
    with tempfile.TemporaryDirectory(prefix="dlpipe-describe-") as tmp:
        meta = load_meta(Path(repo.download_artifacts(f"extra_files/{META_FILE}", tmp)).parent)
    return Contents(meta, frozenset(names & set(extra_file_names())), uri)


def _store_bundle(tag: str) -> Bundle:
    import bentoml

    return _read_saved(Path(bentoml.models.get(tag).path))


def _read_saved(folder: Path) -> Bundle:
    """A bundle `_write_saved` wrote to `folder`."""
    saved = read_json(folder / BUNDLE_FILE)
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.name in saved["files"]}
    onnx = (folder / "model.onnx").read_bytes()
    return Bundle(onnx, load_meta(folder), saved["source"], files, saved["version"], saved["metrics"])


def _write_saved(bundle: Bundle, folder: Path) -> None:
    """model.onnx, meta.json, the extra files and bundle.json (source, version, metrics, the extra files' names)."""
    (folder / "model.onnx").write_bytes(bundle.onnx)
    (folder / META_FILE).write_text(bundle.meta.model_dump_json())
    for file_name, data in (bundle.files or {}).items():
        (folder / file_name).write_bytes(data)
    saved = {"source": bundle.source, "version": bundle.version, "metrics": bundle.metrics}
    (folder / BUNDLE_FILE).write_text(json.dumps(saved | {"files": sorted(bundle.files or {})}))


def save_to_store(bundle: Bundle, name: str) -> str:
    """Copy a bundle into the BentoML model store (what `bentoml build` packs into a Bento); return its tag."""
    import bentoml

    labels = {"task": bundle.meta.task, "version": bundle.version or "local"}
    with bentoml.models.create(name, labels=labels, metadata={"source": bundle.source}) as model:
        _write_saved(bundle, Path(model.path))
    return str(model.tag)


def bundle_tokenizer(bundle: Bundle) -> Any:
    """The bundle's tokenizer (tokenizers.Tokenizer), padding and truncation off: `encode` owns both."""
    from tokenizers import Tokenizer

    text = (bundle.files or {}).get(TOKENIZER)
    if text is None:
        raise ValueError(f"{bundle.source}: no {TOKENIZER} in this model bundle")
    tok = Tokenizer.from_str(text.decode("utf-8"))
    tok.no_padding()
    tok.no_truncation()
    return tok


def bundle_from_env(default_task: str = "tabular") -> Bundle:
    """The bundle picked by DLPIPE_TASK and DLPIPE_MODEL_URI / DLPIPE_MODEL_DIR (what `dlpipe serve` sets),
    else the model a Bento was built with (serving/packed.json, written by `dlpipe serve build`); in an HTTP worker,
    the one its server process loaded (`shared_with_workers`)."""

    def load() -> list[Bundle]:
        env = os.environ.get
        packed = read_json(PACKED) if PACKED.is_file() else {}
        task = env("DLPIPE_TASK") or packed.get("task") or default_task
        if env("DLPIPE_MODEL_URI") or env("DLPIPE_MODEL_DIR") or not packed:
            return [load_bundle(task, env("DLPIPE_MODEL_URI"), env("DLPIPE_MODEL_DIR"))]
        return [load_bundle(task, bento_model=packed["model"])]

    return shared_with_workers(load)[0]


# `bentoml serve` builds a service twice: in its own process (to read the service's definition), then in each HTTP
# worker it starts. The first load hands its bundles down to those workers: every worker serves the very versions
# the server resolved, even if an alias moves meanwhile, and none imports MLflow (2-3 s of each worker's start-up).
HANDED_DOWN = "DLPIPE_HANDED_DOWN_BUNDLES"  # {"pid": the process that loaded them, "dir": their saved copies}
COPIES_PREFIX = "dlpipe-bundles-"  # the copies' folder in the temp directory: dlpipe-bundles-<server pid>-<random>


def shared_with_workers(load: Callable[[], list[Bundle]]) -> list[Bundle]:
    """In an HTTP worker, the bundles its own server process handed down (never an older ancestor's); elsewhere
    `load()`, each graph opened once (`check_graphs`: a corrupt one stops the server now), saved to a private folder
    (removed when this process exits) that this process's environment names, which the workers it starts inherit."""
    import bentoml

    if bentoml.server_context.worker_index is not None:
        return _handed_down() or load()
    bundles = load()
    for bundle in bundles:
        check_graphs(bundle)
    remove_orphaned_copies()
    folder = Path(tempfile.mkdtemp(prefix=f"{COPIES_PREFIX}{os.getpid()}-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    for i, bundle in enumerate(bundles):
        (folder / str(i)).mkdir()
        _write_saved(bundle, folder / str(i))
    os.environ[HANDED_DOWN] = json.dumps({"pid": os.getpid(), "dir": str(folder)})
    return bundles


def check_graphs(bundle: Bundle) -> None:
    """Open each of the bundle's ONNX graphs once, on the CPU with one thread, and let them go: `bentoml serve`
    calls it in its own process, so a graph the HTTP workers could not open stops the server at start with the
    error naming it (a worker failing at start is restarted every 10 s, forever)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    graphs = {"model.onnx": bundle.onnx} | {n: g for n, g in (bundle.files or {}).items() if n.endswith(".onnx")}
    for name, graph in graphs.items():
        open_graph(graph, name, bundle.source, opts, ["CPUExecutionProvider"])


def open_graph(graph: bytes, name: str, source: str, opts: Any, providers: list[str]) -> Any:
    """An ONNX Runtime session on `graph` (`name` of the bundle from `source`); a DataError naming it when the bytes
    are not a loadable model (cut short, corrupt)."""
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    try:
        return ort.InferenceSession(graph, sess_options=opts, providers=providers)
    except (ort_errors.InvalidProtobuf, ort_errors.InvalidArgument, ort_errors.InvalidGraph) as err:
        raise DataError(
            f"{source}: {name} is not a loadable ONNX model, cut short or corrupt ({err}); export the model again"
        ) from None


def remove_orphaned_copies(temp: Path | None = None) -> list[Path]:
    """Remove this user's handed-down copies whose server is gone without its exit handler (killed with SIGKILL,
    or by the kernel for memory): the model bytes would otherwise stay in the temp directory. Returns them."""
    removed = []
    for folder in Path(temp or tempfile.gettempdir()).glob(f"{COPIES_PREFIX}*-*"):
        pid = folder.name.removeprefix(COPIES_PREFIX).split("-")[0]
        try:
            if not pid.isdigit() or folder.stat().st_uid != os.getuid() or _alive(int(pid)):
                continue
        except OSError:  # removed meanwhile
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it does, as another user's process
        pass
    return True


def _handed_down() -> list[Bundle] | None:
    try:
        given = json.loads(os.environ.get(HANDED_DOWN) or "{}")
    except ValueError:
        return None
    folder = Path(given.get("dir") or "")
    if given.get("pid") != os.getppid() or not folder.is_dir():
        return None
    saved = sorted((f for f in folder.iterdir() if (f / BUNDLE_FILE).is_file()), key=lambda f: int(f.name))
    return [_read_saved(f) for f in saved] or None
