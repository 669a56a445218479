"""The root `dlpipe` command; each command group registers itself on it (pipelines/cli/__init__.py wires them)."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="dlpipe: classic deep-learning architectures from raw data to an HTTP endpoint.\n\n"
    "Steps: data pull -> prepare -> train -> evaluate -> export -> register -> serve. "
    "`dvc repro` runs the steps for every task; `dlpipe pipeline` runs them on Kubeflow.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
