"""`dlpipe`: one CLI in front of every step. DVC stages and `make` call these commands.

Each step command reads its stage's block of params.yaml for the task, applies `--set` overrides,
and calls the step's plain function with the task's standard paths (components/core/layout.py).
Heavy libraries are imported inside the commands so `--help` answers at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import typer
from pydantic import BaseModel

from components.config import STAGE_MODELS, load_params, resolve, resolve_experiment, task_block
from components.core.errors import DlpipeError
from components.core.layout import Layout
from pipelines.kfp_cli import pipeline_app
from serving.cli import serve_app

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
app.add_typer(serve_app, name="serve")
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
    lines += _fields(STAGE_MODELS[stage], "")
    return "".join(lines)


def _fields(model: type[BaseModel], prefix: str) -> list[str]:
    lines = []
    for name, field in model.model_fields.items():
        default = field.get_default(call_default_factory=True)
        options = [get_args(a)[0] if get_origin(a) is Annotated else a for a in get_args(field.annotation)]
        variants = [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(variants) > 1:  # a choice of configs (model: ffn | cnn | ...): each with its own fields
            for variant in variants:
                lines.append(f"  {prefix}{name} with name={variant.model_fields['name'].default}:\n\n")
                lines += _fields(variant, f"{prefix}{name}.")
            continue
        if isinstance(default, BaseModel):
            lines += _fields(type(default), f"{prefix}{name}.")
            continue
        doc = field.description or ""
        if get_origin(field.annotation) is Literal:
            doc = f"one of {' | '.join(map(str, get_args(field.annotation)))}. {doc}"
        lines.append(f"  {prefix}{name} = {default!r}  {doc}\n\n")
    return lines


def _config(stage: str, task: str, params_file: Path, overrides: list[str] | None, tuned: Path | None = None) -> Any:
    """The step's config from params.yaml's `stage.task` block, the command line's overrides and (train --tuned)
    tuning's best point: `resolve`, the path every runner takes."""
    return resolve(stage, task, task_block(load_params(params_file), stage, task), overrides, tuned)


def _experiment(model: type[BaseModel], name: str, params_file: Path, overrides: list[str] | None) -> Any:
    """An experiment's config from params.yaml `experiments.<name>` and the command line's overrides."""
    block = load_params(params_file).get("experiments", {}).get(name)
    return resolve_experiment(model, name, block, overrides)


def _print(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


@data_app.command("pull")
def data_pull() -> None:
    """Materialise data/raw as data.dvc records it: from the DVC remote, else rebuilt and verified."""
    from components.data.datastore import pull

    how = "pulled from the DVC remote" if pull() == "remote" else "rebuilt from the sources, verified, pushed"
    typer.echo(f"data/raw matches data.dvc ({how})")


@data_app.command("snapshot")
def data_snapshot() -> None:
    """Rebuild data/raw from the built-in sources, record it in data.dvc and push it (commit data.dvc after)."""
    from components.data.datastore import snapshot

    typer.echo(f"data.dvc now records {snapshot()}")


@data_app.command("list")
def data_list() -> None:
    """List the built-in datasets."""
    from components.data.ingest import DATASETS

    typer.echo("\n".join(sorted(DATASETS)))


@data_app.command("ingest")
def data_ingest(
    name: Annotated[str, typer.Argument(help="dataset name (built-in, or the name to give --csv)")],
    csv: Annotated[Path | None, typer.Option(help="a CSV of your own with a 'target' column")] = None,
    images: Annotated[Path | None, typer.Option(help="an image folder: one sub-folder of PNG/JPEG per class")] = None,
    text_csv: Annotated[
        Path | None, typer.Option(help="a UTF-8 CSV of labelled texts (columns --text-column, --label-column)")
    ] = None,
    series_csv: Annotated[
        Path | None, typer.Option(help="a CSV time series (columns --time-column, --value-column)")
    ] = None,
    text_file: Annotated[Path | None, typer.Option(help="a UTF-8 text file (a corpus for causal_lm)")] = None,
    text_column: str = "text",
    label_column: str = "label",
    time_column: str = "date",
    value_column: str = "value",
) -> None:
    """Write one dataset into data/raw/<name>/ (then `dlpipe data snapshot` to version it)."""
    from components.data.ingest import (
        ingest,
        ingest_csv,
        ingest_images,
        ingest_series_csv,
        ingest_text,
        ingest_text_csv,
    )

    if text_file:
        out = ingest_text(text_file, name)
    elif text_csv:
        out = ingest_text_csv(text_csv, name, text=text_column, label=label_column)
    elif series_csv:
        out = ingest_series_csv(series_csv, name, time=time_column, value=value_column)
    else:
        out = ingest_csv(csv, name) if csv else ingest_images(images, name) if images else ingest(name)
    typer.echo(f"wrote {out}")


@app.command(epilog=_describe("prepare"))
def prepare(task: Task, params: ParamsFile = Path("params.yaml"), set_: Overrides = None) -> None:
    """Split (seeded, stratified) and scale the task's dataset; write splits and meta.json."""
    from components.data.prepare import prepare as run

    cfg = _config("prepare", task, params, set_)
    paths = Layout(task)
    meta = run(paths.raw, paths.data, cfg, task)
    typer.echo(f"{task}: {meta.splits} rows, input {meta.input.shape[1:]} -> {paths.data}")


@app.command(epilog=_describe("augment"))
def augment(task: Task, params: ParamsFile = Path("params.yaml"), set_: Overrides = None) -> None:
    """Write the task's augmentation policy (augment.json) and a preview grid of augmented samples."""
    from components.data.augment import augment as run

    cfg = _config("augment", task, params, set_)
    paths = Layout(task)
    policy = run(paths.data, paths.augment, cfg, task)
    typer.echo(f"{task}: {', '.join(op['op'] for op in policy['ops']) or 'no augmentation'} -> {paths.augment}")


@app.command(epilog=_describe("train"))
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
        cfg = _config("train", task, params, set_, paths.best_params if tuned else None)
    data, out = data or paths.data, out or paths.model
    _print(run(data, out, cfg, task, resume=resume, augment_dir=augment or paths.augment))


@app.command(epilog=_describe("tune"))
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
    from components.tune.study import tune as run

    cfg = _config("tune", task, params, [*(set_ or []), *([f"workers={workers}"] if workers is not None else [])])
    paths = Layout(task)
    train_raw = task_block(load_params(params), "train", task)
    summary = run(paths.data, paths.model, paths.tuning_plots, task, cfg, train_raw, paths.model / "augment")
    _print({k: v for k, v in summary.items() if k != "pareto_front"})


@app.command()
def evaluate(task: Task) -> None:
    """Score the trained model on the test split: metrics/<task>.json and plots/<task>/."""
    from components.evaluate.step import evaluate as run

    paths = Layout(task)
    _print(run(paths.data, paths.model, paths.metrics, paths.plots))


@app.command(epilog=_describe("export"))
def export(task: Task, params: ParamsFile = Path("params.yaml"), set_: Overrides = None) -> None:
    """Export to ONNX (dynamic batch), check it, and verify parity against PyTorch."""
    from components.release.export import export as run

    cfg = _config("export", task, params, set_)
    paths = Layout(task)
    info = run(paths.data, paths.model, paths.model, cfg)
    typer.echo(f"{paths.model / 'model.onnx'}: parity max abs diff {info['parity_max_abs_diff']:.2e}")


@app.command(epilog=_describe("register"))
def register(task: Task, params: ParamsFile = Path("params.yaml"), set_: Overrides = None) -> None:
    """Register the ONNX model in MLflow; move alias `champion` only if it beats the current one."""
    from components.release.register import register as run

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
    from components.experiments.vanishing import VanishingConfig
    from components.experiments.vanishing import vanishing_gradients as run

    cfg = _experiment(VanishingConfig, "vanishing_gradients", params, set_)
    results = run(
        Layout(task).data, Path("metrics/vanishing_gradients.json"), Path("plots/vanishing_gradients.png"), cfg
    )
    typer.echo(f"{'variant':20s} {'first layer':>12s} {'last hidden':>12s} {'first/last':>11s} {'val acc':>8s}")
    for name, r in results.items():
        typer.echo(
            f"{name:20s} {r['first_layer_grad_norm']:12.2e} {r['last_hidden_grad_norm']:12.2e} "
            f"{r['first_over_last']:11.2e} {r['val_accuracy']:8.3f}"
        )


@experiment_app.command("vanishing-gradients-rnn")
def vanishing_gradients_rnn(params: ParamsFile = Path("params.yaml"), set_: Overrides = None) -> None:
    """Plain RNN vs LSTM vs GRU on a long-memory task: gradient w.r.t. early time steps, and accuracy."""
    from components.experiments.vanishing import VanishingRNNConfig
    from components.experiments.vanishing import vanishing_gradients_rnn as run

    cfg = _experiment(VanishingRNNConfig, "vanishing_gradients_rnn", params, set_)
    results = run(Path("metrics/vanishing_gradients_rnn.json"), Path("plots/vanishing_gradients_rnn.png"), cfg)
    typer.echo(
        f"{'cell':6s} {'|dL/dx_0| init':>15s} {'first/last init':>16s} {'first/last trained':>19s} {'val acc':>8s}"
    )
    for name, r in results.items():
        typer.echo(
            f"{name:6s} {r['grad_first_step_init']:15.2e} {r['first_over_last_init']:16.2e} "
            f"{r['first_over_last_trained']:19.2e} {r['val_accuracy']:8.3f}"
        )


@experiment_app.command("transfer-fashion")
def transfer_fashion(params: ParamsFile = Path("params.yaml"), set_: Overrides = None) -> None:
    """MNIST-pretrained CNN on a small Fashion-MNIST slice: fine-tune vs feature extractor vs scratch."""
    from components.experiments.transfer import TransferStudyConfig, transfer_study

    cfg = _experiment(TransferStudyConfig, "transfer_fashion", params, set_)
    results = transfer_study(
        Path("data/raw"), Path("artifacts/transfer_fashion"), Path("metrics/transfer_fashion.json"), cfg
    )
    typer.echo(f"{'variant':20s} {'accuracy':>9s} {'macro-F1':>9s} {'seconds':>8s}")
    for name, r in results.items():
        typer.echo(f"{name:20s} {r['accuracy']:9.4f} {r['macro_f1']:9.4f} {r['train_seconds']:8.1f}")


@experiment_app.command("encoder-finetune")
def encoder_finetune(params: ParamsFile = Path("params.yaml"), set_: Overrides = None) -> None:
    """MLM-pretrained encoder vs the same encoder from scratch, fine-tuned on VADER's movie snippets."""
    from components.experiments.encoder import EncoderStudyConfig, encoder_study

    cfg = _experiment(EncoderStudyConfig, "encoder_finetune", params, set_)
    results = encoder_study(Path("data/raw"), Path("artifacts/encoder"), Path("metrics/encoder_finetune.json"), cfg)
    _print(results)


def main() -> None:
    """Entry point: config errors print one clear line instead of a traceback."""
    try:
        app()
    except (DlpipeError, FileNotFoundError) as err:
        typer.echo(f"error: {err}", err=True)
        raise SystemExit(2) from None
