"""Register step: log the ONNX model to MLflow, create a version named after the task, and move the
`champion` alias only when the new version beats the current champion on the task's primary metric.
"""

from __future__ import annotations

import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import onnx

from components.config import ConfigError, RegisterConfig
from components.core import tracking
from components.core.contract import TaskMeta, load_meta
from components.core.io import read_json, write_json

SCORE_TAG = "primary_metric_value"
EXTRA_GRAPHS = ("attention.onnx", "embeddings.onnx")  # token models: attention maps, sentence vectors


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

    mlflow = tracking.configure()
    client = mlflow.MlflowClient()
    with tracking.resume_task_run(model_dir):
        info = mlflow.onnx.log_model(
            onnx.load(onnx_path),
            name="model",
            registered_model_name=task,
            pip_requirements=serving_requirements(),
            extra_files=[str(p) for p in bundle],
            metadata={"task": task, "primary_metric": cfg.primary_metric, "score": score},
            save_as_external_data=False,
        )
        new_version = str(info.registered_model_version)
        client.set_model_version_tag(task, new_version, SCORE_TAG, str(score))
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


def serving_requirements() -> list[str]:
    """What the MLflow model needs to score: the CPU build of ONNX Runtime at the version installed here (whichever
    build this machine has: onnxruntime-gpu and onnxruntime ship the same module), and onnx."""
    import onnxruntime

    return [f"onnxruntime=={onnxruntime.__version__}", f"onnx=={version('onnx')}"]


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
