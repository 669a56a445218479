"""`dlpipe serve`: exec `bentoml serve` on the service for a task, with the model source in the env.

Imports stay light (no bentoml, no mlflow) so the rest of the CLI starts fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from components import tracking

ROOT = Path(__file__).resolve().parents[1]
# Task family (the part of the task name before "_") -> BentoML service import path.
IMAGE = "serving.image:Image"
SERVICES = {
    "tabular": "serving.tabular:Tabular",
    "digits": IMAGE,
    "mnist": IMAGE,
    "fashion": IMAGE,
    "forecast": "serving.forecast:Forecaster",  # POST /forecast
    "sentiment": "serving.text:TextClassifier",  # POST /classify
    "decoder": "serving.decoder:Decoder",  # POST /generate, /generate_stream, /attention
    "encoder": "serving.encoder:Encoder",  # POST /classify, /embed, /attention
}


def serve(
    task: Annotated[str, typer.Option(help="Task to serve, e.g. tabular, tabular_wine.")] = "tabular",
    host: Annotated[str, typer.Option(help="Interface to bind; 0.0.0.0 exposes the server.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 3000,
    model_dir: Annotated[
        str | None, typer.Option(help="Serve a local export (artifacts/<task>) instead of the registry.")
    ] = None,
    model_uri: Annotated[str | None, typer.Option(help="Registry URI; default models:/<task>@champion.")] = None,
) -> None:
    """Serve a task's model over HTTP (POST /predict or the family's endpoints; GET /info; Swagger UI at /).

    Replaces this process with `bentoml serve`. Paths are made absolute and DLPIPE_HOME is fixed first,
    because BentoML changes into its working directory (the repo root) before importing the service.
    """
    service = SERVICES.get(task.split("_")[0])
    if service is None:
        raise typer.BadParameter(f"no service for task {task!r}; families: {', '.join(SERVICES)}", param_hint="--task")
    if model_dir and model_uri:
        raise typer.BadParameter("give --model-dir or --model-uri, not both")
    env = {k: v for k, v in os.environ.items() if k not in ("DLPIPE_MODEL_DIR", "DLPIPE_MODEL_URI")}
    env |= {"DLPIPE_TASK": task, "DLPIPE_HOME": str(tracking.home())}
    if model_dir:
        env["DLPIPE_MODEL_DIR"] = str(Path(model_dir).resolve())
    if model_uri:
        env["DLPIPE_MODEL_URI"] = model_uri
    argv = ["-m", "bentoml", "serve", service, "--host", host, "--port", str(port), "--working-dir", str(ROOT)]
    os.execve(sys.executable, [sys.executable, *argv], env)
