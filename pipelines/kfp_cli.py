"""`dlpipe pipeline`: compile a task's Kubeflow pipeline, run it here with kfp.local, or submit it to a cluster.

kfp, mlflow and torch are imported inside the commands so `dlpipe --help` answers at once.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Annotated

import typer

from components.config import load_params, tasks

pipeline_app = typer.Typer(
    help="Kubeflow Pipelines: the same steps as `dvc repro`, as one pipeline per task "
    "(ingest -> prepare -> train -> evaluate -> export -> register).",
    no_args_is_help=True,
)

ParamsFile = Annotated[
    Path, typer.Option("--params", "-p", help="params file; its task blocks become the pipeline's default parameters")
]
Task = Annotated[str, typer.Option("--task", "-t", help="task name: a key of params.yaml's prepare section")]


def _fail(message: str) -> None:
    """One clear line on stderr instead of a traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@pipeline_app.command("compile")
def compile_(
    task: Annotated[
        list[str] | None, typer.Option("--task", "-t", help="task to compile (repeatable); `all` or none: every task")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for <task>.yaml")] = Path("pipelines/compiled"),
    params: ParamsFile = Path("params.yaml"),
) -> None:
    """Compile each task's pipeline to OUT/<task>.yaml, ready to upload in the KFP UI or to `submit`."""
    from kfp import compiler

    from pipelines.build import build_pipeline

    cfg = load_params(params)
    out.mkdir(parents=True, exist_ok=True)
    for name in tasks(cfg) if task in (None, [], ["all"]) else task:
        path = out / f"{name}.yaml"
        compiler.Compiler().compile(build_pipeline(name, cfg), str(path))
        typer.echo(f"wrote {path}")


@pipeline_app.command()
def run(
    task: Task,
    local: Annotated[
        bool, typer.Option("--local", help="run every step as a subprocess here with kfp.local (required)")
    ] = False,
    params: ParamsFile = Path("params.yaml"),
) -> None:
    """Run the task's pipeline on this machine (kfp.local) and print its test metrics.

    Outputs: $DLPIPE_HOME/local_outputs/ ($DLPIPE_HOME defaults to the working directory).

    Tracking: the same MLflow as the other runners ($MLFLOW_TRACKING_URI, else $DLPIPE_HOME/mlflow.db).

    Run it from the repository root, or a folder with no subfolder named like an installed package.
    """
    if not local:
        _fail("`run` only runs locally: pass --local, or use `dlpipe pipeline submit --host URL` for a cluster")
    import kfp.local

    from components import tracking
    from components.io import read_json
    from pipelines.build import build_pipeline

    pipeline = build_pipeline(task, load_params(params))
    # The step subprocesses inherit the environment: pin them to this process's MLflow, with absolute paths.
    os.environ["DLPIPE_HOME"] = str(tracking.home())
    os.environ["MLFLOW_TRACKING_URI"] = tracking.tracking_uri()
    # The steps run in this environment by design; kfp warns once per task that the image name lacks "python".
    warnings.filterwarnings("ignore", message="You may be attemping to run a task", category=RuntimeWarning)
    kfp.local.init(
        runner=kfp.local.SubprocessRunner(use_venv=False), pipeline_root=str(tracking.home() / "local_outputs")
    )
    start = time.perf_counter()
    try:
        result = pipeline()
    except RuntimeError as err:
        _fail(f"the {task} pipeline failed: {err} (the task's log is above)")
    metrics = read_json(Path(result.output.path) / f"{task}.json")
    typer.echo(f"{task}: pipeline succeeded in {time.perf_counter() - start:.0f} s; metrics {result.output.path}")
    for name, value in sorted(metrics.items()):
        typer.echo(f"  {name}: {value}")


@pipeline_app.command()
def submit(
    host: Annotated[
        str,
        typer.Option(
            help="KFP API endpoint, e.g. http://localhost:8080 after "
            "`kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`"
        ),
    ],
    task: Task = "tabular",
    experiment: Annotated[str | None, typer.Option(help="KFP experiment (default: dlpipe-<task>)")] = None,
    namespace: Annotated[str | None, typer.Option(help="profile namespace on multi-user Kubeflow")] = None,
    token: Annotated[
        str | None, typer.Option(envvar="DLPIPE_KFP_TOKEN", help="bearer token (or set $DLPIPE_KFP_TOKEN)")
    ] = None,
    run_name: Annotated[str | None, typer.Option(help="run name (default: pipeline name + time)")] = None,
    mlflow_uri: Annotated[
        str, typer.Option(help="MLflow tracking URI for the pods (default: the image's $MLFLOW_TRACKING_URI)")
    ] = "",
    params: ParamsFile = Path("params.yaml"),
) -> None:
    """Submit the task's pipeline to a Kubeflow Pipelines cluster and print the run's link."""
    import kfp
    from kfp_server_api.exceptions import ApiException

    from pipelines.build import build_pipeline

    pipeline = build_pipeline(task, load_params(params))
    _probe(host, token)
    warnings.filterwarnings("ignore", message="This client only works with Kubeflow Pipeline", category=FutureWarning)
    try:
        client = kfp.Client(host=host, existing_token=token, namespace=namespace or "kubeflow")
        result = client.create_run_from_pipeline_func(
            pipeline,
            arguments={"mlflow_tracking_uri": mlflow_uri},
            run_name=run_name,
            experiment_name=experiment or f"dlpipe-{task}",
            namespace=namespace,
        )
    except ApiException as err:
        _fail(f"Kubeflow Pipelines at {host} refused the request: HTTP {err.status} {err.reason}")
    typer.echo(f"submitted run {result.run_id}: {host.rstrip('/')}/#/runs/details/{result.run_id}")


def _probe(host: str, token: str | None) -> None:
    """Fail fast on a wrong host: kfp.Client retries a failing health check for 25 s, logging tracebacks."""
    import urllib.error
    import urllib.request

    if not host.startswith(("http://", "https://")):
        _fail(f"--host {host!r}: give a URL that starts with http:// or https://")
    url = f"{host.rstrip('/')}/apis/v2beta1/healthz"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except urllib.error.HTTPError as err:
        _fail(f"{url} answered HTTP {err.code}: not a Kubeflow Pipelines API, or it needs --token")
    except (urllib.error.URLError, OSError) as err:
        _fail(f"cannot reach Kubeflow Pipelines at {host}: {getattr(err, 'reason', err)}")
