"""The one config path: params.yaml (or the pipeline parameter holding its block) -> overrides -> tuned values ->
the stage's validated model. Every runner (the CLI and so DVC, the Kubeflow components, the tests) calls `resolve`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from components.config.base import ConfigError, _Strict, validate
from components.config.cluster import KubeflowConfig
from components.config.data import AugmentConfig, PrepareConfig
from components.config.release import ExportConfig, RegisterConfig
from components.config.train import TrainConfig
from components.config.tune import TuneConfig

PARAMS_FILE = Path("params.yaml")
STAGES = ("prepare", "augment", "tune", "train", "export", "register")


STAGE_MODELS: dict[str, type[_Strict]] = {
    "prepare": PrepareConfig,
    "augment": AugmentConfig,
    "train": TrainConfig,
    "tune": TuneConfig,
    "export": ExportConfig,
    "register": RegisterConfig,
}


def load_params(path: Path | str = PARAMS_FILE) -> dict[str, Any]:
    """Read params.yaml; a missing or malformed file is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping of stages at the top level")
    return params


def tasks(params: dict[str, Any]) -> list[str]:
    """Tasks are the keys of the prepare stage (every task is prepared)."""
    return list(params.get("prepare", {}))


def stage_config(params: dict[str, Any], stage: str, task: str) -> Any:
    """Validate params[stage][task] into the stage's model, naming the failing field on error."""
    raw = params.get(stage, {}).get(task)
    if raw is None and stage in ("prepare", "register"):
        raise ConfigError(f"params: {stage}.{task} is missing")
    return resolve(stage, task, raw)


def kubeflow_config(params: dict[str, Any], task: str) -> KubeflowConfig:
    """The task's cluster settings: params.yaml `kubeflow.<task>` over the defaults."""
    return validate(KubeflowConfig, (params.get("kubeflow") or {}).get(task) or {}, f"kubeflow.{task}")


def run_overrides(overrides: list[str], stage: str, task: str) -> list[str]:
    """The `stage.task.key=value` items of a pipeline run's overrides that concern `stage.task`, as `key=value`."""
    prefix = f"{stage}.{task}."
    return [item[len(prefix) :] for item in overrides if item.startswith(prefix)]


def step_raw(raw: dict[str, Any], overrides: list[str], stage: str, task: str) -> dict[str, Any]:
    """A Kubeflow step's block: the pipeline parameter `raw` with the run's overrides for `stage.task` applied."""
    return resolve_raw(stage, task, raw, run_overrides(overrides, stage, task))


def step_config(raw: dict[str, Any], overrides: list[str], stage: str, task: str, tuned: Path | None = None) -> Any:
    """A Kubeflow step's config: `resolve` with the run's `stage.task.key=value` overrides that concern it."""
    return resolve(stage, task, raw, run_overrides(overrides, stage, task), tuned)


def tune_knobs(task: str, trials: int, workers: int) -> list[str]:
    """The pipeline parameters `tune_trials` / `tune_workers` as overrides of tune.<task>; -1 keeps params.yaml's."""
    knobs = {"n_trials": trials, "workers": workers}
    return [f"tune.{task}.{key}={value}" for key, value in knobs.items() if value >= 0]


def check_run_overrides(params: dict[str, Any], overrides: list[str]) -> None:
    """Reject a pipeline run's overrides before submitting: each is `stage.task.key=value` for a known stage and
    task, and the overridden block still validates."""
    for item in overrides:
        key, sep, _ = item.partition("=")
        parts = key.split(".")
        if not sep or len(parts) < 3 or parts[0] not in STAGE_MODELS or parts[1] not in tasks(params):
            raise ConfigError(
                f"override {item!r}: expected STAGE.TASK.KEY=VALUE with STAGE one of {', '.join(STAGE_MODELS)} "
                f"and TASK one of {', '.join(tasks(params))}"
            )
    for stage in STAGE_MODELS:
        for task in tasks(params):
            mine = run_overrides(overrides, stage, task)
            if mine:
                raw = apply_overrides(params.get(stage, {}).get(task) or {}, mine)
                validate(STAGE_MODELS[stage], raw, f"{stage}.{task}")


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key.sub=value` overrides (values parsed as YAML) to a copy of a stage's raw config."""
    out = copy.deepcopy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE")
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return out


def flatten(config: BaseModel) -> dict[str, Any]:
    """Flatten a config into dotted keys for MLflow params."""
    return dict(_flatten(config.model_dump(), ""))


def _flatten(d: dict[str, Any], prefix: str):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def apply_point(raw: dict[str, Any], point: dict[str, Any]) -> dict[str, Any]:
    """A stage's block with dotted-key values set (e.g. `model.dropout`): a tuning trial's or the best point."""
    out = copy.deepcopy(raw)
    for key, value in point.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def tuned_config(train_raw: dict[str, Any], best_params: Path | None) -> dict[str, Any]:
    """The train block with tuning's best_params.yaml (if the file exists and holds a point) applied on top."""
    path = Path(best_params) if best_params is not None else None
    best = yaml.safe_load(path.read_text()) if path is not None and path.is_file() else None
    return apply_point(train_raw, best or {})


def resolve_raw(
    stage: str, task: str, block: dict[str, Any] | None, overrides: list[str] | None = None, tuned: Path | None = None
) -> dict[str, Any]:
    """`resolve` before validation: the block with overrides, then (train) tuning's best point, applied."""
    raw = apply_overrides(block or {}, list(overrides or []))
    return tuned_config(raw, tuned) if tuned is not None else raw


def resolve(
    stage: str, task: str, block: dict[str, Any] | None, overrides: list[str] | None = None, tuned: Path | None = None
) -> Any:
    """A step's config, the same way for every runner: `block` (params.yaml's `stage.task`, or the Kubeflow
    pipeline parameter that carries it), then `overrides` (KEY=VALUE, values parsed as YAML), then `tuned`
    (best_params.yaml of the tune step, for train), validated into the stage's model; a bad field is a
    ConfigError naming its params.yaml path."""
    return validate(STAGE_MODELS[stage], resolve_raw(stage, task, block, overrides, tuned), f"{stage}.{task}")


def task_block(params: dict[str, Any], stage: str, task: str) -> dict[str, Any]:
    """params.yaml's `stage.task` block (empty when absent); an unknown task is a ConfigError naming the known ones."""
    if task not in tasks(params):
        raise ConfigError(f"unknown task {task!r}; tasks in params.yaml: {', '.join(tasks(params))}")
    return params.get(stage, {}).get(task) or {}


def resolve_experiment(
    model: type[_Strict], name: str, block: dict[str, Any] | None, overrides: list[str] | None = None
) -> Any:
    """An experiment's config (params.yaml `experiments.<name>`, the experiment's own model) with overrides: the
    same path as `resolve`, for the lessons that are not a stage of a task."""
    return validate(model, apply_overrides(block or {}, list(overrides or [])), f"experiments.{name}")
