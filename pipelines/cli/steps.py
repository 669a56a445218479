"""The step commands DVC's stages run (`dlpipe prepare|augment|tune|train|evaluate|export|register TASK`), and
`tasks` / `metrics`. Each resolves its config and calls the step's plain function with the task's standard paths."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from components.config import load_params, resolve, task_block
from components.core.errors import DataError
from components.core.io import read_json
from components.core.layout import Layout
from pipelines.cli.app import app
from pipelines.cli.common import Overrides, ParamsFile, Task, config_for, describe, show


@app.command(epilog=describe("prepare"))
def prepare(task: Task, params: ParamsFile = Path("params.yaml"), set_: Overrides = None) -> None:
    """Split (seeded, stratified) and scale the task's dataset; write splits and meta.json."""
    from components.data.prepare import prepare as run

    cfg = config_for("prepare", task, params, set_)
    paths = Layout(task)
    meta = run(paths.raw, paths.data, cfg, task)
    typer.echo(f"{task}: {meta.splits} rows, input {meta.input.shape[1:]} -> {paths.data}")


@app.command(epilog=describe("augment"))
def augment(task: Task, params: ParamsFile = Path("params.yaml"), set_: Overrides = None) -> None:
    """Write the task's augmentation policy (augment.json) and a preview grid of augmented samples."""
    from components.data.augment import augment as run

    cfg = config_for("augment", task, params, set_)
    paths = Layout(task)
    policy = run(paths.data, paths.augment, cfg, task)
    typer.echo(f"{task}: {', '.join(op['op'] for op in policy['ops']) or 'no augmentation'} -> {paths.augment}")


@app.command(epilog=describe("train"))
def train(
    task: Task,
    params: ParamsFile = Path("params.yaml"),
    set_: Overrides = None,
    resume: Annotated[bool, typer.Option(help="continue from the task's checkpoint.pt")] = False,
    tuned: Annotated[
        bool, typer.Option(help="apply tuning's artifacts/<task>/best_params.yaml on top of params.yaml")
    ] = False,
    config: Annotated[
        Path | None, typer.Option(help="a resolved train config (JSON/YAML) instead of params.yaml's block")
    ] = None,
    data: Annotated[Path | None, typer.Option(help="prepared data folder (default: artifacts/<task>/data)")] = None,
    out: Annotated[Path | None, typer.Option(help="output folder (default: artifacts/<task>)")] = None,
    augment: Annotated[Path | None, typer.Option(help="augmentation policy folder")] = None,
) -> None:
    """Train the task's model with the generic loop; checkpoint, history and an MLflow run.

    --config/--data/--out/--augment are how a pipeline step launches `torchrun ... dlpipe train` on its own
    folders (components/train/launch.py)."""
    import yaml

    from components.train.step import train as run

    paths = Layout(task)
    if config is not None:  # a config resolved by a pipeline step already: only the command line's overrides
        cfg = resolve("train", task, yaml.safe_load(config.read_text()), set_)
    else:
        cfg = config_for("train", task, params, set_, paths.best_params if tuned else None)
    data, out = data or paths.data, out or paths.model
    show(run(data, out, cfg, task, resume=resume, augment_dir=augment or paths.augment))


@app.command(epilog=describe("tune"))
def tune(
    task: Task,
    params: ParamsFile = Path("params.yaml"),
    set_: Overrides = None,
    workers: Annotated[
        int | None, typer.Option(help="worker processes on the shared study (default: tune.workers)")
    ] = None,
) -> None:
    """Optuna study over train.<task>: each trial runs the train step; writes best_params.yaml and plots.

    Storage: SQLite (optuna.db) unless $OPTUNA_STORAGE or tune.storage names PostgreSQL or journal:<file>.
    Watch it live with `optuna-dashboard sqlite:///optuna.db`.
    """
    from components.tune.step import tune as run

    cfg = config_for("tune", task, params, [*(set_ or []), *([f"workers={workers}"] if workers is not None else [])])
    paths = Layout(task)
    train_raw = task_block(load_params(params), "train", task)
    summary = run(paths.data, paths.model, paths.tuning_plots, task, cfg, train_raw, paths.model / "augment")
    show({k: v for k, v in summary.items() if k != "pareto_front"})


@app.command()
def evaluate(task: Task) -> None:
    """Score the trained model on the test split: metrics/<task>.json and plots/<task>/."""
    from components.evaluate.step import evaluate as run

    paths = Layout(task)
    show(run(paths.data, paths.model, paths.metrics, paths.plots))


@app.command(epilog=describe("export"))
def export(task: Task, params: ParamsFile = Path("params.yaml"), set_: Overrides = None) -> None:
    """Export to ONNX (dynamic batch), check it, and verify parity against PyTorch."""
    from components.release.export import export as run

    cfg = config_for("export", task, params, set_)
    paths = Layout(task)
    info = run(paths.data, paths.model, paths.model, cfg)
    typer.echo(f"{paths.model / 'model.onnx'}: parity max abs diff {info['parity_max_abs_diff']:.2e}")


@app.command(epilog=describe("register"))
def register(task: Task, params: ParamsFile = Path("params.yaml"), set_: Overrides = None) -> None:
    """Register the ONNX model in MLflow; move alias `champion` only if it beats the current one."""
    from components.release.register import register as run

    cfg = config_for("register", task, params, set_)
    paths = Layout(task)
    show(run(paths.data, paths.model, paths.model, paths.metrics, paths.registration, task, cfg))


@app.command()
def tasks(params: ParamsFile = Path("params.yaml")) -> None:
    """List the tasks defined in params.yaml with their dataset and objective."""
    for name, cfg in load_params(params).get("prepare", {}).items():
        typer.echo(f"{name}: {cfg.get('dataset')} ({cfg.get('objective')})")


@app.command()
def metrics(params: ParamsFile = Path("params.yaml")) -> None:
    """Print every task's test metrics and registered champion, then each experiment's headline figures.

    A task's line reads metrics/<task>.json and its registration, an experiment's its variants' figures in
    metrics/<experiment>.json (`dvc metrics show` prints every figure). A file that cannot be read (cut short, not
    JSON, no object of figures) gets a line naming it, the others still print, and the command exits with status 2."""
    loaded = load_params(params)
    rows = [(task, _task_line) for task in loaded.get("prepare", {})]
    rows += [(name, _experiment_line) for name in loaded.get("experiments", {})]
    unreadable = 0
    for name, line_of in rows:
        try:
            line = line_of(Layout(name))
        except DataError as err:
            line, unreadable = f"error: {err}", unreadable + 1
        typer.echo(f"{name:18s} {line}")
    if unreadable:
        raise typer.Exit(2)


def _task_line(paths: Layout) -> str:
    """A task's test figures and its champion version (or why it has none), or "(not run yet)"."""
    if not paths.metrics.is_file():
        return "(not run yet)"
    scores = _figures(paths.metrics)
    line = "  ".join(f"{k}={v:.4g}" if isinstance(v, int | float) else f"{k}={v}" for k, v in sorted(scores.items()))
    reg = _figures(paths.registration) if paths.registration.is_file() else {}
    if reg.get("champion_version"):
        line += f"  [champion: v{reg['champion_version']}]"
    elif reg.get("registered") is False:  # the promotion gate held it back
        line += f"  [not registered: {reg.get('primary_metric')} below min_score {reg.get('min_score')}]"
    return line


def _experiment_line(paths: Layout) -> str:
    return headlines(_figures(paths.metrics)) if paths.metrics.is_file() else "(not run yet)"


def _figures(path: Path) -> dict:
    """A metrics or registration file's JSON object; a DataError naming the file when it holds none."""
    figures = read_json(path)
    if not isinstance(figures, dict):
        raise DataError(f"{path} holds {type(figures).__name__}, not an object of figures: run its step again")
    return figures


HEADLINE = ("accuracy", "val_accuracy", "first_over_last", "first_over_last_trained")  # what each study compares
NOT_VARIANTS = ("reference", "seconds", "pretraining")  # an experiment's context, not one of its variants


def headlines(results: dict) -> str:
    """An experiment's metrics -> "variant key=value ... | variant ...": per variant, its headline figures
    (HEADLINE) or, for a study over training-set sizes, its figure per size ("30=0.737")."""
    parts = []
    for variant, figures in results.items():
        if not isinstance(figures, dict) or variant in NOT_VARIANTS:
            continue
        shown = {k: v for k, v in figures.items() if isinstance(v, int | float) and (k in HEADLINE or k.isdigit())}
        ordered = sorted(shown.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else HEADLINE.index(kv[0]))
        if ordered:
            parts.append(f"{variant} " + " ".join(f"{k}={v:.4g}" for k, v in ordered))
    served = f"  [served: {results['served']}]" if isinstance(results.get("served"), str) else ""
    return " | ".join(parts) + served
