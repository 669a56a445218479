"""The Optuna plumbing of the tune step: storage (SQLite, PostgreSQL, journal file), samplers, pruners, the search
space sampled from params.yaml's `tune.<task>.space`, and opening (or resuming) a study."""

from __future__ import annotations

import json
import os
from contextlib import suppress
from pathlib import Path
from typing import Any

from components.config import TuneConfig
from components.core import tracking
from components.core.errors import DlpipeError
from components.core.secrets import is_masked, mask


class TuningError(DlpipeError):
    """The study cannot run: storage unreachable, or an existing study disagrees with the config."""


def storage_url(cfg: TuneConfig) -> str:
    """tune.storage, else $OPTUNA_STORAGE, else SQLite in the home. A tune.storage whose password was masked
    (a compiled pipeline, study.json) is the same database as $OPTUNA_STORAGE, which holds the password."""
    env = os.environ.get("OPTUNA_STORAGE")
    if cfg.storage and is_masked(cfg.storage):
        if not env:
            raise TuningError(
                f"tune.storage {cfg.storage!r} has its password masked: set $OPTUNA_STORAGE (the Secret's `storage`)"
            )
        return env
    return cfg.storage or env or f"sqlite:///{tracking.home() / 'optuna.db'}"


def make_storage(cfg: TuneConfig) -> Any:
    """RDB storage with heartbeats (a killed worker's trial is failed, not left RUNNING), or a journal file."""
    import optuna

    url = storage_url(cfg)
    local = url.removeprefix("journal:") if url.startswith("journal:") else url.removeprefix("sqlite:///")
    if local != url:  # a file here: its folder (a new $DLPIPE_HOME) is made, as MLflow makes its store's
        with suppress(OSError):  # a folder that cannot be made: the driver's own error below names the file
            Path(local).parent.mkdir(parents=True, exist_ok=True)
    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
        return optuna.storages.RDBStorage(url, heartbeat_interval=cfg.heartbeat_s, grace_period=2 * cfg.heartbeat_s)
    except Exception as err:  # the driver's own errors vary (sqlalchemy, psycopg2, OS errors)
        raise TuningError(mask(f"tune.storage {url!r} cannot be opened: {err}")) from None


def make_sampler(cfg: TuneConfig) -> Any:
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # multivariate TPE, GP

    samplers = optuna.samplers
    if cfg.sampler == "grid":
        return samplers.GridSampler(grid_space(cfg), seed=cfg.seed)
    factory = {
        "tpe": lambda: samplers.TPESampler(
            seed=cfg.seed, multivariate=True, group=True, n_startup_trials=cfg.startup_trials
        ),
        "random": lambda: samplers.RandomSampler(seed=cfg.seed),
        "cmaes": lambda: samplers.CmaEsSampler(
            seed=cfg.seed, warn_independent_sampling=False, n_startup_trials=cfg.startup_trials
        ),
        "gp": lambda: samplers.GPSampler(seed=cfg.seed, n_startup_trials=cfg.startup_trials),
        "nsga2": lambda: samplers.NSGAIISampler(seed=cfg.seed),
    }
    return factory[cfg.sampler]()


def make_pruner(cfg: TuneConfig) -> Any:
    import optuna

    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=cfg.prune_after_trials, n_warmup_steps=cfg.prune_warmup_epochs
        )
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=2, max_resource=cfg.epochs or "auto")
    return optuna.pruners.NopPruner()


def grid_space(cfg: TuneConfig) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    for name, p in cfg.ordered_space():
        if p.type == "categorical":
            grid[name] = [json.dumps(c) for c in p.choices]
        else:
            n = round((p.high - p.low) / p.step)
            values = [p.low + i * p.step for i in range(n + 1)]
            grid[name] = [int(v) for v in values] if p.type == "int" else values
    return grid


def sample(trial: Any, cfg: TuneConfig) -> dict[str, Any]:
    """Draw one point of the space; a parameter whose `when` does not hold is not sampled at all."""
    point: dict[str, Any] = {}
    for name, p in cfg.ordered_space():
        if p.when and any(point.get(k) not in v for k, v in p.when.items()):
            continue
        if p.type == "categorical":
            point[name] = json.loads(trial.suggest_categorical(name, [json.dumps(c) for c in p.choices]))
        elif p.type == "int":
            point[name] = trial.suggest_int(name, int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
        else:
            point[name] = trial.suggest_float(name, p.low, p.high, log=p.log, step=p.step)
    return point


def open_study(cfg: TuneConfig, task: str) -> Any:
    """Create the study or load it (studies resume); refuse one whose directions differ."""
    import optuna

    name = cfg.study_name or f"dlpipe-{task}"
    storage = make_storage(cfg)
    try:
        existing = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        existing = None
    if existing is not None:
        have = [d.name.lower() for d in existing.directions]
        if have != cfg.directions():
            raise TuningError(
                f"study {name!r} already exists with directions {have}, not {cfg.directions()}: "
                "set tune.study_name to start a new study"
            )
    return optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=make_sampler(cfg),
        pruner=make_pruner(cfg),
        directions=cfg.directions(),
        load_if_exists=True,
    )
