"""The steps as plain Python calls for a notebook or a script: one function per step, a task name and keyword
overrides, the same config resolution and folders as `dlpipe <step> TASK` and DVC's stages.

    from pipelines.api import prepare, train, evaluate, export, register
    prepare("tabular")
    train("tabular", epochs=5, lr=0.003)          # fields of params.yaml's train.tabular
    train("tabular", model__hidden=[64, 32])      # nested fields: `__` for the dot (model.hidden)
    evaluate("tabular"); export("tabular"); register("tabular")

Overrides are applied to params.yaml's `<step>.<task>` block exactly as `-s key=value` on the command line, so a
bad field is the same ConfigError naming its params.yaml path. `root` is where data/, artifacts/, metrics/ and
plots/ live (default: the working directory, as for `dlpipe`); `params` defaults to root's params.yaml, else the
repository's. MLflow and Optuna use $DLPIPE_HOME (default: the working directory), as everywhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from components.config import load_params, resolve, task_block
from components.core.layout import REPO, Layout

PathLike = str | Path


def overrides_of(values: dict[str, Any]) -> list[str]:
    """Keyword arguments as `key.sub=value` overrides: `__` in a name is a dot, values dumped as YAML."""
    return [f"{key.replace('__', '.')}={_yaml(value)}" for key, value in values.items()]


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


def _params_file(root: PathLike, params: PathLike | None) -> Path:
    if params is not None:
        return Path(params)
    local = Path(root) / "params.yaml"
    return local if local.is_file() else REPO / "params.yaml"


def config(
    stage: str,
    task: str,
    *,
    root: PathLike = ".",
    params: PathLike | None = None,
    tuned: bool = False,
    **overrides: Any,
) -> Any:
    """The validated config a step gets: params.yaml's `stage.task` block, then `overrides`, then (train with
    `tuned`) tuning's best_params.yaml."""
    best = Layout(task, Path(root)).best_params if tuned else None
    block = task_block(load_params(_params_file(root, params)), stage, task)
    return resolve(stage, task, block, overrides_of(overrides), best)


def prepare(task: str, *, root: PathLike = ".", params: PathLike | None = None, **overrides: Any) -> Any:
    """Split and scale the task's dataset into artifacts/<task>/data; return its TaskMeta. The raw dataset is
    written from its built-in source when data/raw/<dataset> is missing (`dlpipe data pull` brings the versioned
    copy)."""
    from components.data.ingest import ingest
    from components.data.prepare import prepare as step

    cfg = config("prepare", task, root=root, params=params, **overrides)
    paths = Layout(task, Path(root))
    if not (paths.raw / cfg.dataset).is_dir():
        ingest(cfg.dataset, paths.raw)
    return step(paths.raw, paths.data, cfg, task)


def augment(task: str, *, root: PathLike = ".", params: PathLike | None = None, **overrides: Any) -> dict[str, Any]:
    """Write the task's augmentation policy (artifacts/<task>/augment/augment.json); return it."""
    from components.data.augment import augment as step

    paths = Layout(task, Path(root))
    return step(paths.data, paths.augment, config("augment", task, root=root, params=params, **overrides), task)


def tune(task: str, *, root: PathLike = ".", params: PathLike | None = None, **overrides: Any) -> dict[str, Any]:
    """Run the task's Optuna study over train.<task>; writes best_params.yaml; return the study's summary."""
    from components.tune.step import tune as step

    paths = Layout(task, Path(root))
    cfg = config("tune", task, root=root, params=params, **overrides)
    train_raw = task_block(load_params(_params_file(root, params)), "train", task)
    return step(paths.data, paths.model, paths.tuning_plots, task, cfg, train_raw, paths.augment)


def train(
    task: str,
    *,
    root: PathLike = ".",
    params: PathLike | None = None,
    tuned: bool = False,
    resume: bool = False,
    progress: bool = True,
    **overrides: Any,
) -> dict[str, Any]:
    """Train the task's model into artifacts/<task> (checkpoint, history, an MLflow run); return its summary.
    `tuned` applies tuning's best_params.yaml, `resume` continues from the checkpoint."""
    from components.train.step import train as step

    paths = Layout(task, Path(root))
    cfg = config("train", task, root=root, params=params, tuned=tuned, **overrides)
    augment_dir = paths.augment if paths.augment.is_dir() else None
    return step(paths.data, paths.model, cfg, task, resume=resume, progress=progress, augment_dir=augment_dir)


def evaluate(task: str, *, root: PathLike = ".") -> dict[str, float]:
    """Score the trained model on the test split: metrics/<task>.json and plots/<task>/; return the metrics."""
    from components.evaluate.step import evaluate as step

    paths = Layout(task, Path(root))
    return step(paths.data, paths.model, paths.metrics, paths.plots)


def export(task: str, *, root: PathLike = ".", params: PathLike | None = None, **overrides: Any) -> dict[str, Any]:
    """Export artifacts/<task>/model.onnx, checked for parity with PyTorch; return export.json's content."""
    from components.release.export import export as step

    paths = Layout(task, Path(root))
    return step(paths.data, paths.model, paths.model, config("export", task, root=root, params=params, **overrides))


def register(task: str, *, root: PathLike = ".", params: PathLike | None = None, **overrides: Any) -> dict[str, Any]:
    """Register the ONNX model in MLflow as model `task`; alias `champion` moves only if it is better."""
    from components.release.register import register as step

    paths = Layout(task, Path(root))
    cfg = config("register", task, root=root, params=params, **overrides)
    return step(paths.data, paths.model, paths.model, paths.metrics, paths.registration, task, cfg)
