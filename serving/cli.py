"""`dlpipe serve`: exec `bentoml serve` on a task's own service (serving/app.py) or the gateway (`--task all`),
with the model source in the env; `dlpipe serve build`: a Bento of one task that carries its model.

Before either, the task's model source is read (its meta.json and the files it carries, not its graphs) and a
family chosen for it (serving/families), so an unknown task or one with nothing to serve is a one-line error.
Imports stay light (no bentoml; mlflow only inside that check) so the rest of the CLI starts fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from components.core import tracking
from components.core.errors import DlpipeError

ROOT = Path(__file__).resolve().parents[1]
BENTOFILE = Path(__file__).parent / "bentofile.yaml"
SERVICE = "serving.app:Service"  # one task, any family
GATEWAY = "serving.gateway:Gateway"

serve_app = typer.Typer(help="Serve models over HTTP (BentoML + ONNX Runtime); `build` packs a Bento.")

TaskOption = Annotated[str, typer.Option(help="Task to serve, e.g. tabular, tabular_wine; `all`: the gateway.")]
ModelDir = Annotated[
    str | None,
    typer.Option(help="Serve a local export (artifacts/<task>; with --task all, an artifacts folder) instead."),
]
ModelUri = Annotated[str | None, typer.Option(help="Registry URI; default models:/<task>@champion.")]


def _check(task: str, model_dir: str | None, model_uri: str | None) -> str:
    """The family serving the task's model (from --model-dir, --model-uri, else models:/<task>@champion);
    typer.BadParameter naming the reason when there is none."""
    from serving.bundle import describe
    from serving.families import family_of

    try:
        return family_of(describe(task, model_uri=model_uri, model_dir=model_dir)).name
    except (DlpipeError, ValueError) as err:
        raise typer.BadParameter(f"no service for task {task!r}: {err}", param_hint="--task") from None


@serve_app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context = None,  # type: ignore[assignment]  # None when called as a function
    task: TaskOption = "tabular",
    host: Annotated[str, typer.Option(help="Interface to bind; 0.0.0.0 exposes the server.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 3000,
    model_dir: ModelDir = None,
    model_uri: ModelUri = None,
) -> None:
    """Serve a task's model over HTTP (POST /predict or the family's endpoints; GET /info; Swagger UI at /).

    `--task all` serves every task with a champion or an export from one process ($DLPIPE_TASKS narrows
    it), each under /<task>/. $DLPIPE_API_TOKEN (surrounding whitespace stripped; set but empty is refused)
    protects the prediction routes; a non-loopback --host without it prints a warning. Replaces this process
    with `bentoml serve`. Paths are made absolute and DLPIPE_HOME is fixed first, because BentoML changes
    into its working directory (the repo root) before importing the service.
    """
    if ctx is not None and ctx.invoked_subcommand is not None:
        return
    if model_dir and model_uri:
        raise typer.BadParameter("give --model-dir or --model-uri, not both")
    if task == "all" and model_uri:
        raise typer.BadParameter("--model-uri names one model; the gateway serves each task's champion")
    if task != "all":
        _check(task, model_dir, model_uri)
    from serving.guard import api_token, exposure_warning

    try:
        api_token()
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="DLPIPE_API_TOKEN") from None
    if warning := exposure_warning(host):
        typer.echo(f"warning: {warning}", err=True)
    service = GATEWAY if task == "all" else SERVICE
    env = {k: v for k, v in os.environ.items() if k not in ("DLPIPE_MODEL_DIR", "DLPIPE_MODEL_URI")}
    env |= {"DLPIPE_TASK": task, "DLPIPE_HOME": str(tracking.home())}
    if model_dir:
        env["DLPIPE_MODEL_DIR"] = str(Path(model_dir).resolve())
    if model_uri:
        env["DLPIPE_MODEL_URI"] = model_uri
    argv = ["-m", "bentoml", "serve", service, "--host", host, "--port", str(port), "--working-dir", str(ROOT)]
    os.execve(sys.executable, [sys.executable, *argv], env)


@serve_app.command("build")
def build(task: TaskOption = "tabular", model_dir: ModelDir = None, model_uri: ModelUri = None) -> None:
    """Build a Bento of one task that carries its model (offline: requirements pinned, not locked).

    The model (registry champion, --model-uri, or --model-dir) is copied into the BentoML model store and
    packed into the Bento, which then needs no registry. Prints the Bento's tag; `bentoml containerize TAG`
    makes an image where docker is available (serving/README.md).
    """
    from serving import package

    if task == "all":
        raise typer.BadParameter("a Bento serves one task; build one per task", param_hint="--task")
    if model_dir and model_uri:
        raise typer.BadParameter("give --model-dir or --model-uri, not both")
    _check(task, model_dir, model_uri)
    path = Path(model_dir).resolve() if model_dir else None
    typer.echo(package.build_bento(task, SERVICE, BENTOFILE, ROOT, model_uri=model_uri, model_dir=path))
