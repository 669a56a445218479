"""Register step: log the ONNX model to MLflow, create a version named after the task, and move the
`champion` alias only when the new version beats the current champion on the task's primary metric.

The MLflow model stands alone: model.onnx (tabular and image graphs scale and normalise raw inputs themselves),
meta.json (class names, features, preprocessing), export.json and text tasks' tokenizer.json as extra files, a
`python_function` flavour that answers one row per input row (components/release/pyfunc_onnx.py, copied into the
model with, for text, the encoding rule of components/core/tokens.py), and for tabular, image and text tasks a
signature and an input example (raw feature rows, 0..255 pixel columns, texts). The registered model and the
version carry a model card (data, metrics, intended use, limits) as their description.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from contextlib import AbstractContextManager, nullcontext
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from components.config import ConfigError, RegisterConfig
from components.core import tokens, tracking
from components.core.contract import TaskMeta, load_meta
from components.core.io import read_json, write_json
from components.data.splits import load_split

SCORE_TAG = "primary_metric_value"
EXTRA_GRAPHS = ("attention.onnx", "embeddings.onnx")  # token models: attention maps, sentence vectors
PYFUNC_FILE = "pyfunc_onnx.py"  # the python_function loader copied into the MLflow model
TOKENS_FILE = "dlpipe_tokens.py"  # text models: components/core/tokens.py (the encoding rule) copied beside it


def register(
    data_dir: Path,
    model_dir: Path,
    export_dir: Path,
    metrics_path: Path,
    out_path: Path,
    task: str,
    cfg: RegisterConfig,
) -> dict[str, Any]:
    """Register `export_dir/model.onnx` as a new version of model `task`; write the decision to `out_path`."""
    metrics = read_json(metrics_path)
    if cfg.primary_metric not in metrics:
        raise ConfigError(f"register.{task}.primary_metric: {cfg.primary_metric!r} not in {sorted(metrics)}")
    score = float(metrics[cfg.primary_metric])
    if not qualifies(metrics, cfg):
        decision = {"model": task, "primary_metric": cfg.primary_metric, "score": score, "min_score": cfg.min_score}
        decision |= {"registered": False, "promoted": False}
        write_json(Path(out_path), decision)
        return decision
    onnx_path = Path(export_dir) / "model.onnx"
    bundle = [Path(data_dir) / "meta.json", Path(export_dir) / "export.json"]
    bundle += [p for p in (Path(export_dir) / "graphs" / f for f in EXTRA_GRAPHS) if p.is_file()]
    bundle += [p for p in [Path(data_dir) / "tokenizer.json"] if p.is_file()]  # text tasks serve with it

    meta = load_meta(data_dir)
    mlflow = tracking.configure()
    client = mlflow.MlflowClient()
    with tracking.resume_task_run(model_dir):
        info = log_model(mlflow, onnx_path, bundle, meta, data_dir, task, cfg.primary_metric, score)
        new_version = str(info.registered_model_version)
        client.set_model_version_tag(task, new_version, SCORE_TAG, str(score))
        card = model_card(meta, metrics, cfg.primary_metric)
        client.update_registered_model(task, description=card)
        client.update_model_version(task, new_version, description=card)
        previous = champion_score(client, task, cfg.alias)
        better = previous is None or (score > previous if cfg.greater_is_better else score < previous)
        if better:
            client.set_registered_model_alias(task, cfg.alias, new_version)
        decision = {
            "model": task,
            "version": new_version,
            "primary_metric": cfg.primary_metric,
            "score": score,
            "champion_score_before": previous,
            "registered": True,
            "promoted": better,
            "champion_version": new_version if better else _alias_version(client, task, cfg.alias),
        }
        mlflow.set_tags({"register.promoted": str(better), "register.version": new_version})
        mlflow.log_metrics({"register.new_score": score, "register.promoted": float(better)})
        if previous is not None:
            mlflow.log_metric("register.champion_score_before", previous)
    write_json(Path(out_path), decision)
    return decision


def log_model(
    mlflow: Any,
    onnx_path: Path,
    bundle: list[Path],
    meta: TaskMeta,
    data_dir: Path,
    task: str,
    primary_metric: str,
    score: float,
) -> Any:
    """Log model.onnx as MLflow model `model` of the active run, registered as `task`: the ONNX flavour (what
    serving downloads) with pyfunc_onnx as its `python_function` loader (text models: with the encoding rule beside
    it), and for tabular, image and text tasks a signature and five test rows as the user holds them as the input
    example (MLflow checks the example against the loader while logging)."""
    from mlflow.models import Model, infer_signature

    from components.release.pyfunc_onnx import RowsModel

    example = signature = None
    if meta.kind in ("tabular", "image", "text"):
        example = input_example(meta, data_dir)
        with warnings.catch_warnings():  # MLflow: "integer columns cannot hold missing values"; pixels never miss
            warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer", UserWarning)
            signature = infer_signature(example, RowsModel(onnx_path, data_dir).predict(example))
    with tempfile.TemporaryDirectory(prefix="dlpipe-pyfunc-") as code:
        code_paths = [shutil.copy(Path(__file__).with_name(PYFUNC_FILE), code)]
        if meta.kind == "text":  # the loader's copy imports it as `dlpipe_tokens`
            code_paths.append(shutil.copy(tokens.__file__, Path(code) / TOKENS_FILE))
        with _pins_checked_by_name():
            return Model.log(
                artifact_path=None,
                name="model",
                flavor=_RowsFlavor,
                onnx_model=onnx.load(onnx_path),
                registered_model_name=task,
                signature=signature,
                input_example=example,
                pip_requirements=serving_requirements(text=meta.kind == "text"),
                code_paths=code_paths,
                onnx_execution_providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
                extra_files=[str(p) for p in bundle],
                metadata={
                    "task": task,
                    "kind": meta.kind,
                    "objective": meta.objective,
                    "classes": meta.classes,
                    "feature_names": meta.feature_names,
                    "primary_metric": primary_metric,
                    "score": score,
                },
                save_as_external_data=False,
            )


def input_example(meta: TaskMeta, data_dir: Path, rows: int = 5) -> Any:
    """The first test rows as a user holds them (the pyfunc loader's input): raw feature values (tabular), 0..255
    integer pixel columns (image; the signature then says `long`, as the service rounds pixels to whole values),
    texts (text: the test ids decoded by the task's tokenizer)."""
    import pandas as pd

    from components.release.pyfunc_onnx import TEXT_COLUMN, pixel_columns

    x, _ = load_split(data_dir, "test")
    x = x[:rows]
    if meta.kind == "tabular":
        raw = np.asarray(x, np.float64) * np.asarray(meta.scaler["scale"]) + np.asarray(meta.scaler["mean"])
        return pd.DataFrame(raw, columns=meta.feature_names)
    if meta.kind == "image":
        pre = meta.preprocessing
        shape = (1, -1, 1, 1)
        raw = (np.asarray(x, np.float64) * np.reshape(pre["std"], shape) + np.reshape(pre["mean"], shape)) * 255.0
        pixels = np.clip(raw, 0, 255).round().astype(np.int64).reshape(len(raw), -1)  # whole values, as images hold
        return pd.DataFrame(pixels, columns=pixel_columns(meta.model_dump()))
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(data_dir) / meta.tokenizer["file"]))
    texts = [tok.decode([int(i) for i in ids], skip_special_tokens=True) for ids in x]
    return pd.DataFrame({TEXT_COLUMN: [text or "?" for text in texts]})


class _RowsFlavor:
    """mlflow.onnx's save_model, then `python_function` pointed at pyfunc_onnx (in the model's code/ folder)
    instead of mlflow.onnx's loader, which flattens (rows, classes) outputs and asks for CUDA unconditionally."""

    __name__ = "mlflow.onnx"

    @staticmethod
    def save_model(path: str, mlflow_model: Any, **kwargs: Any) -> None:
        import mlflow.onnx
        from mlflow.models.model import MLMODEL_FILE_NAME

        mlflow.onnx.save_model(path=path, mlflow_model=mlflow_model, **kwargs)
        mlflow_model.flavors["python_function"]["loader_module"] = PYFUNC_FILE.removesuffix(".py")
        mlflow_model.save(str(Path(path) / MLMODEL_FILE_NAME))


def model_card(meta: TaskMeta, metrics: dict[str, float], primary_metric: str) -> str:
    """The registered model's description: what it was trained on, how it scores, what it is for, its limits."""
    scores = ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()) if isinstance(v, int | float))
    takes = {
        "tabular": f"raw values of {len(meta.feature_names or [])} named features (scaled inside the graph)",
        "image": "images of meta.json's `preprocessing.resize` as 0..255 pixel values (normalised inside the "
        "graph); the MLflow model takes one image per row as columns pixel0, pixel1, ...",
        "text": "texts (the MLflow model: a `text` column), tokenized by the tokenizer.json carried with the model",
    }.get(meta.kind, f"`{meta.input.name}` tensors of shape {meta.input.shape} (see meta.json)")
    gives = f"probabilities of classes {meta.classes}" if meta.classes else f"`{meta.output.name}` {meta.output.shape}"
    lines = [
        f"**{meta.task}**: {meta.objective} on dataset `{meta.dataset}` (raw data sha256 {meta.data_sha256[:12]}).",
        f"- Data: {meta.splits.get('train')} training, {meta.splits.get('val')} validation, "
        f"{meta.splits.get('test')} test examples.",
        f"- Test metrics: {scores} (primary: {primary_metric}).",
        f"- Input: {takes}. Output: {gives}.",
        "- Intended use: demonstration and evaluation of the dlpipe pipeline; score rows with "
        "`mlflow models predict`, `dlpipe predict` or `dlpipe serve`.",
        "- Limits: trained on one small public dataset; scores hold only for inputs drawn like its test split; "
        "not validated for decisions about people (e.g. medical diagnosis).",
    ]
    return "\n".join(lines)


def _pins_checked_by_name() -> AbstractContextManager[object]:
    """While MLflow logs a model it checks each pinned requirement against the installed version (a warning on a
    mismatch). To find a requirement's module it first maps every installed module to its distribution
    (`importlib_metadata.packages_distributions()`: the file lists of some 110 distributions, 1.7 s of a register
    step's 3.5 to 5). It asks that module for its version only when a pin names no installed distribution; ours
    name one, or the module itself (`serving_requirements`: onnxruntime, installed as onnxruntime-gpu). So the
    check runs on an empty map, put back as it was afterwards; a process that has built the map keeps it."""
    from unittest import mock

    from mlflow.utils import requirements_utils

    if getattr(requirements_utils, "_MODULES_TO_PACKAGES", False) is not None:  # built, or MLflow changed
        return nullcontext()
    return mock.patch.object(requirements_utils, "_MODULES_TO_PACKAGES", {})


def serving_requirements(text: bool = False) -> list[str]:
    """What the MLflow model needs to score (pyfunc_onnx's imports): the CPU build of ONNX Runtime at the version
    installed here (onnxruntime-gpu and onnxruntime ship the same module), onnx, numpy and pandas; tokenizers for
    text models."""
    import onnxruntime

    packages = ("onnx", "numpy", "pandas", *(("tokenizers",) if text else ()))
    return [f"onnxruntime=={onnxruntime.__version__}"] + [f"{p}=={version(p)}" for p in packages]


def qualifies(metrics: dict[str, float], cfg: RegisterConfig) -> bool:
    """The promotion gate (Kubeflow's `dsl.If` before register, and register itself under DVC): the primary
    metric reaches `min_score`, in the metric's own direction."""
    if cfg.min_score is None:
        return True
    score = float(metrics[cfg.primary_metric])
    return score >= cfg.min_score if cfg.greater_is_better else score <= cfg.min_score


def champion_score(client: Any, task: str, alias: str) -> float | None:
    """The current champion's primary-metric value, or None when there is no champion yet."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(task, alias)
    except MlflowException:
        return None
    value = mv.tags.get(SCORE_TAG)
    return float(value) if value is not None else None


def _alias_version(client: Any, task: str, alias: str) -> str:
    return str(client.get_model_version_by_alias(task, alias).version)


def fetch_model(uri: str, dst: Path | None = None) -> tuple[Path, TaskMeta]:
    """Download a registered ONNX model (e.g. `models:/tabular@champion`); return (model.onnx, meta)."""
    mlflow = tracking.configure()
    dst = Path(dst or tempfile.mkdtemp(prefix="dlpipe-model-"))
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))
    meta_files = list(local.rglob("meta.json"))
    if not (local / "model.onnx").is_file() or not meta_files:
        shutil.rmtree(dst, ignore_errors=True)
        raise FileNotFoundError(f"{uri}: no model.onnx with meta.json in the registered model")
    return local / "model.onnx", load_meta(meta_files[0].parent)
