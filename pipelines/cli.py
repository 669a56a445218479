"""`dlpipe`: one CLI in front of every step. DVC stages and `make` call these commands.

Each step command reads its stage's block of params.yaml for the task, applies `--set` overrides,
and calls the step's plain function with the task's standard paths (components/layout.py).
Heavy libraries are imported inside the commands so `--help` answers at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import typer

from components.config import STAGE_MODELS, ConfigError, apply_overrides, load_params, validate
from components.errors import DlpipeError
from components.layout import Layout
from pipelines.kfp_cli import pipeline_app
from serving.cli import serve

app = typer.Typer(
    help="dlpipe: classic deep-learning architectures from raw data to an HTTP endpoint.\n\n"
    "Steps: data pull -> prepare -> train -> evaluate -> export -> register -> serve. "
    "`dvc repro` runs the steps for every task; `dlpipe pipeline` runs them on Kubeflow.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    help="Raw data: versioned with DVC (data.dvc), built from offline sources.", no_args_is_help=True
)
app.add_typer(data_app, name="data")
app.command()(serve)
app.add_typer(pipeline_app, name="pipeline")
experiment_app = typer.Typer(help="Experiments that reproduce a lesson of the course.", no_args_is_help=True)
app.add_typer(experiment_app, name="experiment")

Task = Annotated[str, typer.Argument(help="task name: a key of params.yaml's prepare section")]
ParamsFile = Annotated[Path, typer.Option("--params", "-p", help="params file")]
Overrides = Annotated[
    list[str] | None, typer.Option("--set", "-s", help="override a field, e.g. -s lr=0.01 -s model.hidden=[128,64]")
]


def _describe(stage: str) -> str:
    """A field table for --help, generated from the stage's config model so it never goes stale."""
    lines = [f"Fields of params.yaml `{stage}.<task>` (override with -s KEY=VALUE):\n\n"]
    for name, field in STAGE_MODELS[stage].model_fields.items():
        default = field.get_default(call_default_factory=True)
        default = default.model_dump() if hasattr(default, "model_dump") else default
        doc = field.description or ""
        if get_origin(field.annotation) is Literal:
            doc = f"one of {' | '.join(map(str, get_args(field.annotation)))}. {doc}"
        lines.append(f"  {name} = {default!r}  {doc}\n\n")
    return "".join(lines)


def _config(stage: str, task: str, params_file: Path, overrides: list[str] | None) -> Any:
    params = load_params(params_file)
    if task not in params.get("prepare", {}):
        raise ConfigError(f"unknown task {task!r}; tasks in {params_file}: {', '.join(params.get('prepare', {}))}")
    raw = apply_overrides(params.get(stage, {}).get(task) or {}, overrides or [])
    return validate(STAGE_MODELS[stage], raw, f"{stage}.{task}")


def _print(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


@data_app.command("pull")
def data_pull() -> None:
    """Materialise data/raw as data.dvc records it: from the DVC remote, else rebuilt and verified."""
    from components.datastore import pull

    how = "pulled from the DVC remote" if pull() == "remote" else "rebuilt from the sources, verified, pushed"
    typer.echo(f"data/raw matches data.dvc ({how})")


@data_app.command("snapshot")
def data_snapshot() -> None:
    """Rebuild data/raw from the built-in sources, record it in data.dvc and push it (commit data.dvc after)."""
    from components.datastore import snapshot

    typer.echo(f"data.dvc now records {snapshot()}")


@data_app.command("list")
def data_list() -> None:
    """List the built-in datasets."""
    from components.ingest import DATASETS

    typer.echo("\n".join(sorted(DATASETS)))


@data_app.command("ingest")
def data_ingest(
    name: Annotated[str, typer.Argument(help="dataset name (built-in, or the name to give --csv)")],
    csv: Annotated[Path | None, typer.Option(help="a CSV of your own with a 'target' column")] = None,
) -> None:
    """Write one dataset into data/raw/<name>/ (then `dlpipe data snapshot` to version it)."""
    from components.ingest import ingest, ingest_csv

    out = ingest_csv(csv, name) if csv else ingest(name)
    typer.echo(f"wrote {out}")


@app.command(epilog=_describe("prepare"))
def prepare(task: Task, params: ParamsFile = Path("params.yaml"), set_: Overrides = None) -> None:
    """Split (seeded, stratified) and scale the task's dataset; write splits and meta.json."""
    from components.prepare import prepare as run

    cfg = _config("prepare", task, params, set_)
    paths = Layout(task)
    meta = run(paths.raw, paths.data, cfg, task)
    typer.echo(f"{task}: {meta['splits']} rows, {len(meta['feature_names'])} features -> {paths.data}")


@app.command(epilog=_describe("train"))
def train(
    task: Task,
    params: ParamsFile = Path("params.yaml"),
    set_: Overrides = None,
    resume: Annotated[bool, typer.Option(help="continue from the task's checkpoint.pt")] = False,
) -> None:
    """Train the task's model with the generic loop; checkpoint, history and an MLflow run."""
    from components.train import train as run

    cfg = _config("train", task, params, set_)
    paths = Layout(task)
    _print(run(paths.data, paths.model, cfg, task, resume=resume))


@app.command()
def evaluate(task: Task) -> None:
    """Score the trained model on the test split: metrics/<task>.json and plots/<task>/."""
    from components.evaluate import evaluate as run

    paths = Layout(task)
    _print(run(paths.data, paths.model, paths.metrics, paths.plots))


@app.command(epilog=_describe("export"))
def export(task: Task, params: ParamsFile = Path("params.yaml"), set_: Overrides = None) -> None:
    """Export to ONNX (dynamic batch), check it, and verify parity against PyTorch."""
    from components.export import export as run

    cfg = _config("export", task, params, set_)
    paths = Layout(task)
    info = run(paths.data, paths.model, paths.model, cfg)
    typer.echo(f"{paths.model / 'model.onnx'}: parity max abs diff {info['parity_max_abs_diff']:.2e}")


@app.command(epilog=_describe("register"))
def register(task: Task, params: ParamsFile = Path("params.yaml"), set_: Overrides = None) -> None:
    """Register the ONNX model in MLflow; move alias `champion` only if it beats the current one."""
    from components.register import register as run

    cfg = _config("register", task, params, set_)
    paths = Layout(task)
    _print(run(paths.data, paths.model, paths.model, paths.metrics, paths.registration, task, cfg))


@app.command()
def tasks(params: ParamsFile = Path("params.yaml")) -> None:
    """List the tasks defined in params.yaml with their dataset and objective."""
    for name, cfg in load_params(params).get("prepare", {}).items():
        typer.echo(f"{name}: {cfg.get('dataset')} ({cfg.get('objective')})")


@app.command()
def metrics(params: ParamsFile = Path("params.yaml")) -> None:
    """Print every task's test metrics (metrics/<task>.json) and its registered champion."""
    for task in load_params(params).get("prepare", {}):
        paths = Layout(task)
        if not paths.metrics.is_file():
            typer.echo(f"{task:18s} (not run yet)")
            continue
        scores = json.loads(paths.metrics.read_text())
        line = "  ".join(f"{k}={v:.4g}" for k, v in sorted(scores.items()))
        reg = json.loads(paths.registration.read_text()) if paths.registration.is_file() else {}
        champion = f"  [champion: v{reg['champion_version']}]" if reg else ""
        typer.echo(f"{task:18s} {line}{champion}")


@experiment_app.command("vanishing-gradients")
def vanishing_gradients(
    params: ParamsFile = Path("params.yaml"), set_: Overrides = None, task: str = "tabular"
) -> None:
    """Deep sigmoid FFN vs ReLU, batch norm, residual: per-layer gradient norms and accuracy."""
    from components.experiments import VanishingConfig
    from components.experiments import vanishing_gradients as run

    raw = apply_overrides(load_params(params).get("experiments", {}).get("vanishing_gradients") or {}, set_ or [])
    cfg = validate(VanishingConfig, raw, "experiments.vanishing_gradients")
    results = run(
        Layout(task).data, Path("metrics/vanishing_gradients.json"), Path("plots/vanishing_gradients.png"), cfg
    )
    typer.echo(f"{'variant':20s} {'first layer':>12s} {'last hidden':>12s} {'first/last':>11s} {'val acc':>8s}")
    for name, r in results.items():
        typer.echo(
            f"{name:20s} {r['first_layer_grad_norm']:12.2e} {r['last_hidden_grad_norm']:12.2e} "
            f"{r['first_over_last']:11.2e} {r['val_accuracy']:8.3f}"
        )


def main() -> None:
    """Entry point: config errors print one clear line instead of a traceback."""
    try:
        app()
    except (DlpipeError, FileNotFoundError) as err:
        typer.echo(f"error: {err}", err=True)
        raise SystemExit(2) from None
