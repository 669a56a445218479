"""`dlpipe`: one CLI in front of every step. DVC stages and `make` call these commands.

Each step command reads its stage's block of params.yaml for the task, applies `--set` overrides,
and calls the step's plain function with the task's standard paths (components/core/layout.py).
Heavy libraries are imported inside the commands so `--help` answers at once.
"""

from __future__ import annotations

import inspect
import sys
import traceback

import typer

from components.core.errors import DlpipeError
from components.core.memory import retain_freed_memory, skip_final_collection
from components.core.secrets import mask, mask_logs
from pipelines.cli import predict, repro, steps  # noqa: F401  (register their commands on app)
from pipelines.cli.app import app
from pipelines.cli.data import data_app
from pipelines.cli.experiments import experiment_app
from pipelines.cli.pipeline import pipeline_app
from serving.cli import serve_app

app.add_typer(data_app, name="data")
app.add_typer(serve_app, name="serve")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(experiment_app, name="experiment")


def _reflow(text: str) -> str:
    """A docstring as help: each paragraph's lines joined into one. Typer's rich help keeps a docstring's own line
    breaks after its first paragraph, so text wrapped at 120 columns in the source broke mid-line in a terminal.
    What follows a form feed (click's cut-off for help) is left as it is."""
    shown, cut, rest = text.partition("\f")
    paragraphs = [" ".join(line.strip() for line in p.splitlines()) for p in shown.strip().split("\n\n")]
    return "\n\n".join(paragraphs) + cut + rest


def reflow_help(typer_app: typer.Typer) -> None:
    """Reflow the help of every command and command group under `typer_app` (their docstrings, or help= given)."""
    for info in [*typer_app.registered_commands, *filter(None, [typer_app.registered_callback])]:
        info.help = _reflow(info.help or inspect.getdoc(info.callback) or "")
    if isinstance(typer_app.info.help, str):
        typer_app.info.help = _reflow(typer_app.info.help)
    for group in typer_app.registered_groups:
        reflow_help(group.typer_instance)


reflow_help(app)


# Modules of optional dependencies (pyproject's extras) -> the extra that installs them.
EXTRAS = {
    "kfp": "kubeflow",
    "kfp_server_api": "kubeflow",
    "kubernetes": "kubeflow",
    "docker": "kubeflow",
    "psycopg2": "postgres",
    "optuna_dashboard": "dashboard",
    "safetensors": "minilm",
}


def main() -> None:
    """Entry point: config errors and a missing optional dependency print one clear line instead of a traceback.
    Every error and log line is masked (components/core/secrets.py): a storage URL's password never reaches the
    terminal or a CI log. Freed tensor memory is kept for reuse, and the exit skips the final garbage collection
    (components/core/memory.py)."""
    retain_freed_memory()
    skip_final_collection()
    mask_logs()
    try:
        app()
    except (DlpipeError, FileNotFoundError) as err:
        typer.echo(f"error: {mask(str(err))}", err=True)
        raise SystemExit(2) from None
    except ModuleNotFoundError as err:
        extra = EXTRAS.get((err.name or "").partition(".")[0])
        if extra is not None:
            typer.echo(f"error: {err.name} is not installed; it comes with pip install 'dlpipe[{extra}]'", err=True)
            raise SystemExit(2) from None
        sys.stderr.write(mask(traceback.format_exc()))
        raise SystemExit(1) from None
    except Exception:  # a bug or a library's own error: the traceback, masked
        sys.stderr.write(mask(traceback.format_exc()))
        raise SystemExit(1) from None
