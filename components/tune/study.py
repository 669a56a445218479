"""Tune step: an Optuna study over a task's training config, whose trials call the very same `train`.

Search spaces live in params.yaml (`tune.<task>.space`, dotted keys into `train.<task>`). The study is
stored in SQLite by default (`$OPTUNA_STORAGE` or `tune.<task>.storage` point at PostgreSQL or a journal
file), so any number of worker processes — here, or pods of a Kubeflow ParallelFor — share it. Each trial
is an MLflow run nested under the study's run. The result is `best_params.yaml`, the overrides the final
train stage applies on top of params.yaml.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from components.config import ConfigError, TrainConfig, TuneConfig, validate
from components.config.resolve import apply_point
from components.core import tracking
from components.core.errors import DlpipeError
from components.core.io import atomic_write, write_json


class TuningError(DlpipeError):
    """The study cannot run: storage unreachable, or an existing study disagrees with the config."""


def storage_url(cfg: TuneConfig) -> str:
    return cfg.storage or os.environ.get("OPTUNA_STORAGE") or f"sqlite:///{tracking.home() / 'optuna.db'}"


def make_storage(cfg: TuneConfig) -> Any:
    """RDB storage with heartbeats (a killed worker's trial is failed, not left RUNNING), or a journal file."""
    import optuna

    url = storage_url(cfg)
    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
        return optuna.storages.RDBStorage(url, heartbeat_interval=cfg.heartbeat_s, grace_period=2 * cfg.heartbeat_s)
    except Exception as err:  # the driver's own errors vary (sqlalchemy, psycopg2, OS errors)
        raise TuningError(f"tune.storage {url!r} cannot be opened: {err}") from err


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


def work(
    data_dir: Path,
    task: str,
    cfg: TuneConfig,
    train_raw: dict[str, Any],
    parent_run_id: str | None,
    augment_dir: Path | None = None,
) -> None:
    """One worker: run trials until the study holds `n_trials` finished ones (any number of workers)."""
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    from components.train.loop import TrainingError
    from components.train.step import train

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if cfg.workers > 1:  # workers share the cores: one thread each instead of all of them each
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // cfg.workers))
    study = open_study(cfg, task)

    def objective(trial: optuna.Trial) -> Any:
        point = sample(trial, cfg)
        raw = apply_point(train_raw, point)
        if cfg.epochs:
            raw["epochs"] = cfg.epochs
        tcfg = validate(TrainConfig, raw, f"train.{task} (trial {trial.number})")
        out = Path(tempfile.mkdtemp(prefix=f"dlpipe-trial-{trial.number}-"))

        def report(epoch: int, metrics: dict[str, float]) -> None:
            if cfg.metric not in metrics:
                raise ConfigError(f"tune.{task}.metric: {cfg.metric!r} is not one of {sorted(metrics)}")
            trial.set_user_attr("epochs", epoch)
            if len(cfg.directions()) == 1:
                trial.report(metrics[cfg.metric], epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        try:
            summary = train(
                data_dir,
                out,
                tcfg,
                task,
                progress=False,
                report=report,
                parent_run_id=parent_run_id,
                augment_dir=augment_dir,
            )
        except optuna.TrialPruned:
            _mark_run(out, "PRUNED")
            raise
        finally:
            shutil.rmtree(out, ignore_errors=True)
        value = summary["best_metrics"][cfg.metric]
        if cfg.second_objective == "n_parameters":
            from components.core.contract import load_meta
            from components.train.step import build_for, n_parameters

            return value, float(n_parameters(build_for(load_meta(data_dir), tcfg)))
        return value

    study.optimize(
        objective,
        callbacks=[MaxTrialsCallback(cfg.n_trials, states=(TrialState.COMPLETE, TrialState.PRUNED))],
        catch=(TrainingError,),  # a diverging trial is FAIL, the study goes on
    )


def _mark_run(out: Path, state: str) -> None:
    """A pruned trial's MLflow run ends KILLED with tag trial_state, not FAILED."""
    run_json = out / "run.json"
    if run_json.is_file():
        client = tracking.configure().MlflowClient()
        run_id = json.loads(run_json.read_text())["run_id"]
        client.set_tag(run_id, "trial_state", state)
        client.set_terminated(run_id, status="KILLED")


def setup(task: str, cfg: TuneConfig, train_raw: dict[str, Any]) -> tuple[TuneConfig, str]:
    """Open the study (checking storage and directions before any trial) and the study's MLflow run.

    The default study name carries a hash of the tuning and training config: the same config resumes
    its study, a changed one starts afresh. Returns the config with that name and the parent run id.
    """
    if cfg.study_name is None:
        digest = hashlib.sha1(json.dumps([cfg.model_dump(), train_raw], sort_keys=True).encode()).hexdigest()[:8]
        cfg = cfg.model_copy(update={"study_name": f"dlpipe-{task}-{digest}"})
    open_study(cfg, task)
    mlflow = tracking.configure()
    experiment = tracking.experiment_id(task)
    with mlflow.start_run(experiment_id=experiment, run_name=f"{task}-tune", tags=tracking.provenance()) as run:
        mlflow.log_params({f"tune.{k}": v for k, v in cfg.model_dump(exclude={"space"}).items()})
        mlflow.log_dict(cfg.model_dump(), "tune_config.json")
    return cfg, run.info.run_id


def finalize(out_dir: Path, plots_dir: Path, task: str, cfg: TuneConfig, parent_run_id: str) -> dict[str, Any]:
    """Summarise the study into best_params.yaml, tuning.json and plots; log them on the study's run."""
    study = open_study(cfg, task)
    summary = summarise(study, cfg)
    best = summary.get("best_params", {})
    plot_study(study, cfg, Path(plots_dir))
    result = _write_best(Path(out_dir), best, summary)
    mlflow = tracking.configure()
    with mlflow.start_run(run_id=parent_run_id):
        mlflow.log_metrics({k: v for k, v in summary.items() if isinstance(v, int | float)})
        if best:
            mlflow.log_params({f"best.{k}": json.dumps(v) for k, v in best.items()})
        mlflow.log_artifacts(str(plots_dir), artifact_path="tuning")
        mlflow.log_artifact(str(Path(out_dir) / "best_params.yaml"))
    return result


def tune(
    data_dir: Path,
    out_dir: Path,
    plots_dir: Path,
    task: str,
    cfg: TuneConfig,
    train_raw: dict[str, Any],
    augment_dir: Path | None = None,
) -> dict[str, Any]:
    """setup -> `cfg.workers` workers on the shared study -> finalize (Kubeflow runs the same three steps)."""
    if cfg.n_trials == 0:
        Path(plots_dir).mkdir(parents=True, exist_ok=True)
        return _write_best(Path(out_dir), {}, {"n_trials": 0, "note": "tuning off (tune.n_trials = 0)"})
    cfg, parent = setup(task, cfg, train_raw)
    if cfg.workers == 1:
        work(data_dir, task, cfg, train_raw, parent, augment_dir)
    else:
        _spawn_workers(data_dir, task, cfg, train_raw, parent, augment_dir)
    return finalize(out_dir, plots_dir, task, cfg, parent)


def _spawn_workers(
    data_dir: Path, task: str, cfg: TuneConfig, train_raw: dict[str, Any], parent: str, augment_dir: Path | None
) -> None:
    """N processes of `python -m components.tune.study`, each one a worker on the shared study."""
    job = json.dumps(
        {
            "data_dir": str(data_dir),
            "task": task,
            "cfg": cfg.model_dump(),
            "train": train_raw,
            "parent": parent,
            "augment_dir": str(augment_dir) if augment_dir else None,
        }
    )
    cmd = [sys.executable, "-m", "components.tune.study"]
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, text=True) for _ in range(cfg.workers)]
    for proc in procs:
        proc.stdin.write(job)
        proc.stdin.close()
    failed = [p.wait() for p in procs]
    if any(failed):
        raise TuningError(f"{sum(1 for c in failed if c)} of {cfg.workers} tuning workers failed (exit codes {failed})")


def summarise(study: Any, cfg: TuneConfig) -> dict[str, Any]:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    count = {s.name.lower(): sum(1 for t in trials if t.state == s) for s in TrialState}
    summary: dict[str, Any] = {
        "n_complete": count["complete"],
        "n_pruned": count["pruned"],
        "n_failed": count["fail"],
        "epochs_trained": sum(t.user_attrs.get("epochs", 0) for t in trials),
    }
    if count["complete"] == 0:
        return summary
    if len(cfg.directions()) == 1:
        summary["best_value"] = study.best_value
        summary["best_params"] = _decode(study.best_params, cfg)
    else:
        front = study.best_trials
        pick = min(front, key=lambda t: t.values[0] * (1 if cfg.direction == "minimize" else -1))
        summary["pareto_front"] = [{"values": t.values, "params": _decode(t.params, cfg)} for t in front]
        summary["best_value"] = pick.values[0]
        summary["best_params"] = _decode(pick.params, cfg)
    return summary


def _decode(params: dict[str, Any], cfg: TuneConfig) -> dict[str, Any]:
    return {k: json.loads(v) if cfg.space[k].type == "categorical" else v for k, v in params.items()}


def _write_best(out_dir: Path, best: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    text = yaml.safe_dump(best, sort_keys=True)
    atomic_write(out_dir / "best_params.yaml", lambda tmp: tmp.write_text(text))
    write_json(out_dir / "tuning.json", summary)
    return summary


def plot_study(study: Any, cfg: TuneConfig, plots_dir: Path) -> None:
    """Static PNGs via optuna's matplotlib backend; interactive HTML too when plotly is installed."""
    import importlib.util
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization as vis
    import optuna.visualization.matplotlib as mvis

    plots_dir.mkdir(parents=True, exist_ok=True)
    multi = len(cfg.directions()) > 1
    names = (
        ["pareto_front", "param_importances", "parallel_coordinate"]
        if multi
        else ["optimization_history", "param_importances", "parallel_coordinate", "intermediate_values"]
    )
    target = {"target": lambda t: t.values[0], "target_name": cfg.metric} if multi else {}
    html = importlib.util.find_spec("plotly") is not None
    for name in names:
        kwargs = {} if name in ("pareto_front", "intermediate_values") else target
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ax = getattr(mvis, f"plot_{name}")(study, **kwargs)
            except (ValueError, RuntimeError):  # e.g. importances need 2+ complete trials
                continue
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(7, 4.5)
            fig.tight_layout()
            fig.savefig(plots_dir / f"{name}.png", dpi=90)
            plt.close(fig)
            if html:
                getattr(vis, f"plot_{name}")(study, **kwargs).write_html(plots_dir / f"{name}.html")


if __name__ == "__main__":  # a worker process started by `_spawn_workers` (or by hand on another machine)
    job = json.loads(sys.stdin.read())
    augment = Path(job["augment_dir"]) if job.get("augment_dir") else None
    work(
        Path(job["data_dir"]), job["task"], TuneConfig.model_validate(job["cfg"]), job["train"], job["parent"], augment
    )
