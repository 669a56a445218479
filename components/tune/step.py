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

from components.config import ConfigError, TrainConfig, TuneConfig, validate
from components.config.resolve import apply_point
from components.core import tracking
from components.core.contract import load_meta
from components.core.secrets import mask
from components.tune.report import _write_best, plot_study, plot_tuning_off, summarise
from components.tune.study import TuningError, make_storage, open_study, sample


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
    # workers share the cores: each trial trains on its share of them unless train.threads says otherwise
    threads = max(1, (os.cpu_count() or 1) // cfg.workers) if cfg.workers > 1 else None
    study = open_study(cfg, task)

    def objective(trial: optuna.Trial) -> Any:
        point = sample(trial, cfg)
        raw = apply_point(train_raw, point)
        if cfg.epochs:
            raw["epochs"] = cfg.epochs
        if threads is not None and raw.get("threads") is None:
            raw["threads"] = threads
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
        except TrainingError as err:  # the trial is FAIL; its reason is what the study reports if all fail
            trial.set_user_attr("error", str(err))
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
        callbacks=[
            MaxTrialsCallback(cfg.n_trials, states=(TrialState.COMPLETE, TrialState.PRUNED)),
            _failure_budget(cfg.n_trials, task),
        ],
        catch=(TrainingError,),  # a diverging trial is FAIL, the study goes on
    )


def _failure_budget(n_trials: int, task: str) -> Any:
    """A study runs at most `n_trials` failed trials: then it stops, and when no trial finished at all it fails
    with the first trial's error (a study whose every trial diverges would otherwise never reach n_trials)."""
    from optuna.trial import TrialState

    def callback(study: Any, trial: Any) -> None:
        if trial.state != TrialState.FAIL:
            return
        trials = study.get_trials(deepcopy=False)
        failed = [t for t in trials if t.state == TrialState.FAIL]
        if len(failed) < n_trials:
            return
        if any(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials):
            study.stop()
            return
        first = min(failed, key=lambda t: t.number)
        raise TuningError(
            f"all {len(failed)} trials failed; the first (trial {first.number}): "
            f"{first.user_attrs.get('error', 'no message')} (check train.{task} and tune.{task}.space)"
        )

    return callback


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
        mlflow.log_params(mask({f"tune.{k}": v for k, v in cfg.model_dump(exclude={"space"}).items()}))
        mlflow.log_dict(mask(cfg.model_dump()), "tune_config.json")
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
        plot_tuning_off(Path(plots_dir), task)
        return _write_best(Path(out_dir), {}, {"n_trials": 0, "note": "tuning off (tune.n_trials = 0)"})
    make_storage(cfg)  # an unreachable storage is named first
    load_meta(data_dir)  # then unprepared data, before the study and its run exist (not in a failed trial)
    cfg, parent = setup(task, cfg, train_raw)
    if cfg.workers == 1:
        work(data_dir, task, cfg, train_raw, parent, augment_dir)
    else:
        _spawn_workers(data_dir, task, cfg, train_raw, parent, augment_dir)
    return finalize(out_dir, plots_dir, task, cfg, parent)


def _spawn_workers(
    data_dir: Path, task: str, cfg: TuneConfig, train_raw: dict[str, Any], parent: str, augment_dir: Path | None
) -> None:
    """N processes of `python -m components.tune.step`, each one a worker on the shared study."""
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
    cmd = [sys.executable, "-m", "components.tune.step"]
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, text=True) for _ in range(cfg.workers)]
    for proc in procs:
        proc.stdin.write(job)
        proc.stdin.close()
    failed = [p.wait() for p in procs]
    if any(failed):
        raise TuningError(f"{sum(1 for c in failed if c)} of {cfg.workers} tuning workers failed (exit codes {failed})")


if __name__ == "__main__":  # a worker process started by `_spawn_workers` (or by hand on another machine)
    job = json.loads(sys.stdin.read())
    augment = Path(job["augment_dir"]) if job.get("augment_dir") else None
    work(
        Path(job["data_dir"]), job["task"], TuneConfig.model_validate(job["cfg"]), job["train"], job["parent"], augment
    )
