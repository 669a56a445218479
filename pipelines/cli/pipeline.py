"""`dlpipe pipeline`: compile the Kubeflow pipelines, run one here with kfp.local, or operate a cluster: submit,
schedule, list, status.

kfp, mlflow and torch are imported inside the commands so `dlpipe --help` answers at once. Every failure a user
can cause (a wrong host, a rejected token, a bad override) ends in one `error:` line, not a traceback.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer

from components.config import ConfigError, check_run_overrides, load_params, tasks
from components.core.secrets import has_secret, mask

pipeline_app = typer.Typer(
    help="Kubeflow Pipelines: the same steps as `dvc repro`, one pipeline per task and `all` "
    "(ingest -> prepare -> augment -> tune -> train -> evaluate -> export -> register).",
    no_args_is_help=True,
)

ParamsFile = Annotated[
    Path, typer.Option("--params", "-p", help="params file; its task blocks become the pipeline's default parameters")
]
Task = Annotated[str, typer.Option("--task", "-t", help="a task of params.yaml (its prepare section), or `all`")]
Overrides = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="override a params field for this run: STAGE.TASK.KEY=VALUE (repeatable)"),
]
Host = Annotated[
    str | None,
    typer.Option(
        envvar="DLPIPE_KFP_HOST",
        help="KFP API endpoint, e.g. http://localhost:8080 after `kubectl port-forward -n kubeflow "
        "svc/ml-pipeline-ui 8080:80` (default with --in-cluster: the ml-pipeline service)",
    ),
]
Token = Annotated[str | None, typer.Option(envvar="DLPIPE_KFP_TOKEN", help="bearer token (or set $DLPIPE_KFP_TOKEN)")]
InCluster = Annotated[
    bool, typer.Option(help="authenticate with the pod's projected service-account token (inside the cluster)")
]
Namespace = Annotated[str | None, typer.Option(help="profile namespace on multi-user Kubeflow")]
IN_CLUSTER_HOST = "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"
FINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED", "CANCELING")


def _fail(message: str) -> None:
    """One clear line on stderr instead of a traceback."""
    typer.echo(f"error: {mask(message)}", err=True)
    raise typer.Exit(2)


def _pipeline(task: str, params: Path, overrides: list[str] | None) -> Any:
    """The task's (or `all`) pipeline; a bad task, params file or override is one clear line."""
    from pipelines.build import build

    try:
        cfg = load_params(params)
        if task != "all" and task not in tasks(cfg):
            raise ConfigError(f"unknown task {task!r}; tasks in {params}: all, {', '.join(tasks(cfg))}")
        check_run_overrides(cfg, overrides or [])
        return build(task, cfg)
    except ConfigError as err:
        _fail(str(err))


@pipeline_app.command("compile")
def compile_(
    task: Annotated[
        list[str] | None,
        typer.Option("--task", "-t", help="task to compile (repeatable); none: every task and `all`"),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for <task>.yaml")] = Path("pipelines/compiled"),
    params: ParamsFile = Path("params.yaml"),
) -> None:
    """Compile pipelines to OUT/<task>.yaml (`all.yaml` runs every task), ready to upload in the KFP UI."""
    from kfp import compiler

    out.mkdir(parents=True, exist_ok=True)
    for name in task or [*tasks(load_params(params)), "all"]:
        path = out / f"{name}.yaml"
        compiler.Compiler().compile(_pipeline(name, params, []), str(path))
        typer.echo(f"wrote {path}")


@pipeline_app.command()
def run(
    task: Task,
    local: Annotated[
        bool, typer.Option("--local", help="run every step as a subprocess here with kfp.local (required)")
    ] = False,
    set_: Overrides = None,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="with --task all: run only these tasks (repeatable)")
    ] = None,
    container: Annotated[
        str | None,
        typer.Option(
            help="run every step in a container of this image (kfp.local DockerRunner on $DOCKER_HOST, e.g. "
            "podman's socket), e.g. localhost/dlpipe:0.1.0 from `make image`"
        ),
    ] = None,
    params: ParamsFile = Path("params.yaml"),
) -> None:
    """Run the pipeline on this machine (kfp.local) and print each task's test metrics.

    Outputs: $DLPIPE_HOME/local_outputs/ ($DLPIPE_HOME defaults to the working directory).

    Tracking: the same MLflow as the other runners ($MLFLOW_TRACKING_URI, else $DLPIPE_HOME/mlflow.db). With
    --container the steps see only local_outputs/ (and the host's network only when MLflow is a server): a local
    store then lives in local_outputs/mlflow.db.

    Run it from the repository root, or a folder with no subfolder named like an installed package.
    """
    if not local:
        _fail("`run` only runs locally: pass --local, or use `dlpipe pipeline submit --host URL` for a cluster")
    import kfp.local

    from components.core import tracking
    from components.core.io import read_json

    pipeline = _pipeline(task, params, set_)
    arguments = _arguments(task, set_, only, params)
    # The step subprocesses inherit the environment: pin them to this process's MLflow, with absolute paths.
    os.environ["DLPIPE_HOME"] = str(tracking.home())
    os.environ["MLFLOW_TRACKING_URI"] = tracking.tracking_uri()
    # The steps run in this environment by design; kfp warns once per task that the image name lacks "python".
    warnings.filterwarnings("ignore", message="You may be attemping to run a task", category=RuntimeWarning)
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner", category=UserWarning)
    root = tracking.home() / "local_outputs"
    if container:
        from components.core.errors import DlpipeError
        from pipelines.containers import docker_runner

        root.mkdir(parents=True, exist_ok=True)
        try:
            kfp.local.init(runner=docker_runner(container, root), pipeline_root=str(root))
        except DlpipeError as err:
            _fail(str(err))
    else:
        from pipelines import stagefork

        stagefork.install_kfp()  # each step forked from a process that imported torch and MLflow once
        kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    before = set(root.glob("*")) if root.is_dir() else set()
    start = time.perf_counter()
    try:
        with nullcontext() if container else _steps_temp_dir():  # in a container, mktemp runs in there
            pipeline(**arguments)
    except RuntimeError as err:
        _fail(f"the {task} pipeline failed: {err} (the task's log is above)")
    (run_dir,) = {path for path in set(root.glob("*")) - before if path.is_dir() and path.name != "mlruns"}
    typer.echo(f"{task}: pipeline succeeded in {time.perf_counter() - start:.0f} s; outputs {run_dir}")
    for path in sorted(run_dir.glob("evaluate*/metrics/*.json")):
        typer.echo(f"{path.stem}:")
        for name, value in sorted(read_json(path).items()):
            typer.echo(f"  {name}: {value}")


@contextmanager
def _steps_temp_dir() -> Iterator[None]:
    """The step subprocesses' $TMPDIR: a folder of the run's own, removed with it. A lightweight component's command
    writes the step's source into `mktemp -d` and never removes it (a pod is thrown away), so each local run left one
    folder per step in the system's temp directory."""
    from unittest import mock

    with tempfile.TemporaryDirectory(prefix="dlpipe-steps-") as tmp, mock.patch.dict(os.environ, TMPDIR=tmp):
        yield


@contextmanager
def _client(host: str | None, token: str | None, namespace: str | None, in_cluster: bool) -> Iterator[Any]:
    """(kfp.Client, host) for a reachable, authorised API; API errors inside the block become one line."""
    import kfp
    from kfp_server_api.exceptions import ApiException

    if in_cluster:
        host = host or IN_CLUSTER_HOST
        path = Path(os.environ.get("KF_PIPELINES_SA_TOKEN_PATH", SA_TOKEN_PATH))
        if not path.is_file():
            _fail(
                f"--in-cluster: no service-account token at {path} (mount the projected `pipelines.kubeflow.org` token)"
            )
        token = path.read_text().strip()
    if not host:
        _fail("no Kubeflow Pipelines host: pass --host URL (or set $DLPIPE_KFP_HOST), or --in-cluster in a pod")
    _probe(host, token)
    warnings.filterwarnings("ignore", message="This client only works with Kubeflow Pipeline", category=FutureWarning)
    try:
        yield kfp.Client(host=host, existing_token=token, namespace=namespace or "kubeflow"), host
    except ApiException as err:
        detail = (err.body or "").strip().replace("\n", " ")[:300]
        _fail(f"Kubeflow Pipelines at {host} refused the request: HTTP {err.status} {err.reason} {detail}".strip())


def _probe(host: str, token: str | None) -> None:
    """Fail fast on a wrong host or token: kfp.Client retries a failing health check for 25 s, logging tracebacks."""
    import urllib.error
    import urllib.request

    if not host.startswith(("http://", "https://")):
        _fail(f"--host {host!r}: give a URL that starts with http:// or https://")
    url = f"{host.rstrip('/')}/apis/v2beta1/healthz"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):
            why = "rejected the token" if token else "needs a token (--token, $DLPIPE_KFP_TOKEN or --in-cluster)"
            _fail(f"Kubeflow Pipelines at {host} {why}: HTTP {err.code} {err.reason}")
        _fail(f"{url} answered HTTP {err.code}: not a Kubeflow Pipelines API")
    except (urllib.error.URLError, OSError) as err:
        _fail(f"cannot reach Kubeflow Pipelines at {host}: {getattr(err, 'reason', err)}")


def _arguments(
    task: str, overrides: list[str] | None, only: list[str] | None, params: Path, **shared: Any
) -> dict[str, Any]:
    """The run's pipeline arguments: overrides, the `all` pipeline's task list, and the shared parameters given.
    A password in any of them is refused: Kubeflow stores run parameters in clear, for anyone who sees the run."""
    arguments = {"params_overrides": overrides or [], **{k: v for k, v in shared.items() if v is not None}}
    for name, value in arguments.items():
        if has_secret(json.dumps(value)):
            _fail(
                f"{name} carries a password or secret ({mask(json.dumps(value))}): Kubeflow would store it in the "
                "run's parameters; put it in the Kubernetes Secret the steps read (docs/kubeflow.md, Secrets)"
            )
    if only:
        known = tasks(load_params(params))
        if task != "all" or not set(only) <= set(known):
            _fail(f"--only takes tasks of the `all` pipeline ({', '.join(known)}) with --task all; got {only}")
        arguments["tasks"] = only
    return arguments


Image = Annotated[str | None, typer.Option(help="component image (default: $DLPIPE_IMAGE at compile time)")]
MlflowUri = Annotated[
    str | None, typer.Option(help="MLflow tracking URI for the pods (default: the dlpipe-mlflow Secret's uri)")
]
DvcRemote = Annotated[str | None, typer.Option(help="DVC remote the ingest step pulls from, e.g. s3://bucket/dlpipe")]
GpuCount = Annotated[int | None, typer.Option(help="GPUs for the train step of GPU tasks")]
Only = Annotated[list[str] | None, typer.Option("--only", help="with --task all: run only these tasks")]


@pipeline_app.command()
def submit(
    host: Host = None,
    task: Task = "tabular",
    experiment: Annotated[str | None, typer.Option(help="KFP experiment (default: dlpipe-<task>)")] = None,
    namespace: Namespace = None,
    token: Token = None,
    in_cluster: InCluster = False,
    run_name: Annotated[str | None, typer.Option(help="run name (default: pipeline name + time)")] = None,
    set_: Overrides = None,
    only: Only = None,
    image: Image = None,
    mlflow_uri: MlflowUri = None,
    dvc_remote: DvcRemote = None,
    gpu_count: GpuCount = None,
    wait: Annotated[bool, typer.Option(help="wait for the run to finish; exit 1 unless it succeeded")] = False,
    timeout: Annotated[int, typer.Option(help="--wait: give up after this many seconds")] = 24 * 3600,
    params: ParamsFile = Path("params.yaml"),
) -> None:
    """Submit a pipeline run to a Kubeflow Pipelines cluster and print its link."""
    pipeline = _pipeline(task, params, set_)
    shared = {"image": image, "mlflow_tracking_uri": mlflow_uri, "dvc_remote": dvc_remote, "gpu_count": gpu_count}
    arguments = _arguments(task, set_, only, params, **shared)
    with _client(host, token, namespace, in_cluster) as (client, url):
        result = client.create_run_from_pipeline_func(
            pipeline,
            arguments=arguments,
            run_name=run_name,
            experiment_name=experiment or f"dlpipe-{task}",
            namespace=namespace,
        )
        typer.echo(f"submitted run {result.run_id}: {url.rstrip('/')}/#/runs/details/{result.run_id}")
        if wait:
            state = client.wait_for_run_completion(result.run_id, timeout=timeout).state
            typer.echo(f"run {result.run_id}: {state}")
            if state != "SUCCEEDED":
                raise typer.Exit(1)


def cron_6(expression: str) -> str:
    """KFP's cron has 6 fields (seconds first); a standard 5-field expression gets second 0."""
    fields = expression.split()
    if len(fields) == 5:
        return " ".join(["0", *fields])
    if len(fields) != 6:
        _fail(f"--cron {expression!r}: give 5 fields (minute hour day month weekday) or 6 (seconds first)")
    return expression


@pipeline_app.command()
def schedule(
    cron: Annotated[str, typer.Option(help="when to run, e.g. '0 3 * * *' (daily at 03:00)")],
    host: Host = None,
    task: Task = "all",
    name: Annotated[str | None, typer.Option(help="recurring run name (default: dlpipe-<task>-schedule)")] = None,
    experiment: Annotated[str | None, typer.Option(help="KFP experiment (default: dlpipe-<task>)")] = None,
    namespace: Namespace = None,
    token: Token = None,
    in_cluster: InCluster = False,
    set_: Overrides = None,
    only: Only = None,
    image: Image = None,
    mlflow_uri: MlflowUri = None,
    dvc_remote: DvcRemote = None,
    gpu_count: GpuCount = None,
    max_concurrency: Annotated[int, typer.Option(help="runs of this schedule at once")] = 1,
    catchup: Annotated[bool, typer.Option(help="run the missed intervals after a pause")] = False,
    params: ParamsFile = Path("params.yaml"),
) -> None:
    """Create a recurring run (cron) of a pipeline on a Kubeflow Pipelines cluster."""
    from kfp import compiler

    expression = cron_6(cron)
    pipeline = _pipeline(task, params, set_)
    shared = {"image": image, "mlflow_tracking_uri": mlflow_uri, "dvc_remote": dvc_remote, "gpu_count": gpu_count}
    arguments = _arguments(task, set_, only, params, **shared)
    with _client(host, token, namespace, in_cluster) as (client, _), tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / f"{task}.yaml"
        compiler.Compiler().compile(pipeline, str(package))
        exp = client.create_experiment(experiment or f"dlpipe-{task}", namespace=namespace)
        job = client.create_recurring_run(
            experiment_id=exp.experiment_id,
            job_name=name or f"dlpipe-{task}-schedule",
            cron_expression=expression,
            max_concurrency=max_concurrency,
            no_catchup=not catchup,
            params=arguments,
            pipeline_package_path=str(package),
        )
        typer.echo(f"scheduled {job.display_name} ({job.recurring_run_id}): cron '{expression}'")


@pipeline_app.command("list")
def list_(
    host: Host = None,
    namespace: Namespace = None,
    token: Token = None,
    in_cluster: InCluster = False,
    limit: Annotated[int, typer.Option(help="most recent runs to show")] = 20,
) -> None:
    """The most recent pipeline runs: id, state, created, name."""
    with _client(host, token, namespace, in_cluster) as (client, _):
        runs = client.list_runs(page_size=limit, sort_by="created_at desc", namespace=namespace).runs or []
        for r in runs:
            typer.echo(f"{r.run_id}  {str(r.state):10s}  {r.created_at:%Y-%m-%d %H:%M}  {r.display_name}")
        if not runs:
            typer.echo("no runs")


@pipeline_app.command()
def status(
    run_id: Annotated[str, typer.Argument(help="a run id (from submit or list)")],
    host: Host = None,
    namespace: Namespace = None,
    token: Token = None,
    in_cluster: InCluster = False,
) -> None:
    """One run's state, times, error and the state of each of its tasks."""
    with _client(host, token, namespace, in_cluster) as (client, _):
        r = client.get_run(run_id)
        info = {"run_id": r.run_id, "name": r.display_name, "state": r.state, "created": str(r.created_at)}
        info |= {"finished": str(r.finished_at) if r.state in FINAL_STATES else None}
        if r.error:
            info["error"] = r.error.message
        details = (r.run_details.task_details or []) if r.run_details else []
        info["tasks"] = {t.display_name: t.state for t in details}
        typer.echo(json.dumps(info, indent=2, default=str))
