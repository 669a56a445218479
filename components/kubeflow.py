"""Kubeflow Pipelines components: thin wrappers that call the very same step functions DVC and the tests call.

Every component runs in the one project image (`$DLPIPE_IMAGE`, default `localhost/dlpipe:<version>`, what
`make image` builds) and imports the
project inside its body, because KFP ships only the function's source to the container. Every output
artifact is a folder; inside it the files carry the names the DVC runner gives them, so the MLflow run
looks the same whichever runner produced it. Configs arrive as dicts (pipeline parameters) and are
validated by the same pydantic models, so a bad field fails with its params.yaml name. `overrides` are the
run's `stage.task.key=value` items (pipeline parameter `params_overrides`); each step applies its own.

No `from __future__ import annotations` here: KFP reads the annotations to type the component's I/O.
"""

import os
from importlib.metadata import version

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

IMAGE = os.environ.get("DLPIPE_IMAGE", f"localhost/dlpipe:{version('dlpipe')}")


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def select(tasks: list, task: str) -> bool:
    """The `all` pipeline's gate: is `task` in the run's task list?"""
    return task in tasks


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def ingest(prepare_config: dict, overrides: list, task: str, dvc_remote: str, raw: Output[Dataset]):
    """Materialise the task's raw dataset (named in the prepare config): from `dvc_remote` as data.dvc records it,
    or (empty) rebuilt from the built-in sources."""
    from pathlib import Path

    from components.config import step_config
    from components.core.errors import DataError
    from components.data.datastore import fetch
    from components.data.ingest import ingest as step

    dataset = step_config(prepare_config, overrides, "prepare", task).dataset
    try:
        fetch(dataset, Path(raw.path), dvc_remote) if dvc_remote else step(dataset, Path(raw.path))
    except DataError as err:  # in a pod, files beside the repository do not exist: say what to pass instead
        if dvc_remote:
            raise
        raise DataError(
            f"task {task}: dataset {dataset!r} is not in the image ({err}); pass the pipeline parameter "
            "dvc_remote=<the DVC remote holding data.dvc's data, e.g. s3://dvc/dlpipe>"
        ) from None


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def prepare(raw: Input[Dataset], prepare_config: dict, overrides: list, task: str, data: Output[Dataset]):
    """Split and scale into `data` (splits + meta.json)."""
    from pathlib import Path

    from components.config import step_config
    from components.data.prepare import prepare as step

    step(Path(raw.path), Path(data.path), step_config(prepare_config, overrides, "prepare", task), task)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def augment(data: Input[Dataset], augment_config: dict, overrides: list, task: str, policy: Output[Artifact]):
    """The augmentation policy (augment.json) and its preview grid (preview.png)."""
    from pathlib import Path

    from components.config import step_config
    from components.data.augment import augment as step

    step(Path(data.path), Path(policy.path), step_config(augment_config, overrides, "augment", task), task)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def tune(
    data: Input[Dataset],
    policy: Input[Artifact],
    tune_config: dict,
    train_config: dict,
    overrides: list,
    tune_trials: int,
    tune_workers: int,
    task: str,
    mlflow_tracking_uri: str,
    pipeline_run: str,
    best: Output[Artifact],
):
    """The whole study in one pod, `workers` processes (also the no-tuning case): best_params.yaml, tuning.json,
    plots/."""
    from pathlib import Path

    from components.config import step_config, step_raw, tune_knobs
    from components.core import tracking
    from components.tune.step import tune as step

    tracking.for_pipeline_step(mlflow_tracking_uri, pipeline_run)
    cfg = step_config(tune_config, overrides + tune_knobs(task, tune_trials, tune_workers), "tune", task)
    train_raw = step_raw(train_config, overrides, "train", task)
    step(Path(data.path), Path(best.path), Path(best.path) / "plots", task, cfg, train_raw, Path(policy.path))


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def tune_setup(
    tune_config: dict,
    train_config: dict,
    overrides: list,
    tune_trials: int,
    tune_workers: int,
    task: str,
    mlflow_tracking_uri: str,
    pipeline_run: str,
    study: Output[Artifact],
) -> list:
    """Open the shared study (storage checked before any trial) and its MLflow run; study.json for the workers.
    Returns the workers' ids, the items of the ParallelFor that runs them."""
    import json
    from pathlib import Path

    from components.config import step_config, step_raw, tune_knobs
    from components.core import tracking
    from components.core.secrets import mask
    from components.tune.step import setup

    tracking.for_pipeline_step(mlflow_tracking_uri, pipeline_run)
    cfg = step_config(tune_config, overrides + tune_knobs(task, tune_trials, tune_workers), "tune", task)
    cfg, parent = setup(task, cfg, step_raw(train_config, overrides, "train", task))
    Path(study.path).mkdir(parents=True, exist_ok=True)
    # An artifact anyone with the run can read: the storage password stays in the Secret the workers also get.
    job = {"config": mask(cfg.model_dump()), "parent_run_id": parent}
    (Path(study.path) / "study.json").write_text(json.dumps(job))
    return list(range(cfg.workers))


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def tune_worker(
    data: Input[Dataset],
    policy: Input[Artifact],
    study: Input[Artifact],
    train_config: dict,
    overrides: list,
    task: str,
    mlflow_tracking_uri: str,
    pipeline_run: str,
):
    """One of the ParallelFor workers: trials until the shared study holds n_trials finished ones."""
    import json
    from pathlib import Path

    from components.config import TuneConfig, step_raw
    from components.core import tracking
    from components.tune.step import work

    tracking.for_pipeline_step(mlflow_tracking_uri, pipeline_run)
    job = json.loads((Path(study.path) / "study.json").read_text())
    cfg = TuneConfig.model_validate(job["config"])
    work(
        Path(data.path),
        task,
        cfg,
        step_raw(train_config, overrides, "train", task),
        job["parent_run_id"],
        Path(policy.path),
    )


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def tune_finalize(study: Input[Artifact], task: str, mlflow_tracking_uri: str, best: Output[Artifact]):
    """Best params, trial counts and plots of the finished study."""
    import json
    from pathlib import Path

    from components.config import TuneConfig
    from components.core import tracking
    from components.tune.step import finalize

    tracking.for_pipeline_step(mlflow_tracking_uri)
    job = json.loads((Path(study.path) / "study.json").read_text())
    cfg = TuneConfig.model_validate(job["config"])
    finalize(Path(best.path), Path(best.path) / "plots", task, cfg, job["parent_run_id"])


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train(
    data: Input[Dataset],
    policy: Input[Artifact],
    best: Input[Artifact],
    train_config: dict,
    overrides: list,
    task: str,
    mlflow_tracking_uri: str,
    pipeline_run: str,
    gpus: int,
    checkpoint_root: str,
    model: Output[Model],
):
    """Train into `model` (checkpoint.pt, history.csv, run.json: the MLflow run the later steps reopen).
    With `gpus` > 1 the pod runs `torchrun --nproc-per-node gpus dlpipe train` (DDP on one node). With
    `checkpoint_root` (a mounted PVC), a retried attempt resumes from `<root>/<pipeline run>/<task>`."""
    from pathlib import Path

    from components.config import step_config
    from components.core import tracking
    from components.train.step import retried_train

    tracking.for_pipeline_step(mlflow_tracking_uri, pipeline_run)
    cfg = step_config(train_config, overrides, "train", task, tuned=Path(best.path) / "best_params.yaml")
    checkpoints = Path(checkpoint_root) / (pipeline_run or "local") / task if checkpoint_root else None
    retried_train(Path(data.path), Path(model.path), cfg, task, checkpoints, Path(policy.path), gpus=max(gpus, 1))


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train_distributed(
    data: Input[Dataset],
    policy: Input[Artifact],
    best: Input[Artifact],
    train_config: dict,
    overrides: list,
    task: str,
    mlflow_tracking_uri: str,
    pipeline_run: str,
    image: str,
    distributed: dict,
    secret_names: dict,
    model: Output[Model],
):
    """Train as a Kubeflow Trainer TrainJob (kubeflow.<task>.distributed: nodes x GPUs of `torchrun dlpipe
    train`), wait for it and collect its outputs; outside a cluster, torchrun on this machine."""
    from pathlib import Path

    from components.config import DistributedConfig, step_config
    from components.core import tracking
    from components.train.trainjob import job_name, train_job

    tracking.for_pipeline_step(mlflow_tracking_uri, pipeline_run)
    cfg = step_config(train_config, overrides, "train", task, tuned=Path(best.path) / "best_params.yaml")
    spec = DistributedConfig.model_validate(distributed)
    name = job_name(task, pipeline_run)
    train_job(Path(data.path), Path(model.path), cfg, task, Path(policy.path), spec, image, name, secret_names)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(
    data: Input[Dataset],
    model: Input[Model],
    register_config: dict,
    overrides: list,
    task: str,
    mlflow_tracking_uri: str,
    metrics: Output[Artifact],
    plots: Output[Artifact],
    scalars: Output[Metrics],
) -> bool:
    """Score on the test split: `metrics/<task>.json` for register, the same numbers as KFP UI scalars.
    Returns the promotion gate (register.<task>.min_score) that the pipeline's `dsl.If` tests before register."""
    from pathlib import Path

    from components.config import step_config
    from components.core import tracking
    from components.evaluate.step import evaluate as step
    from components.release.register import qualifies

    tracking.for_pipeline_step(mlflow_tracking_uri)
    cfg = step_config(register_config, overrides, "register", task)
    scores = step(Path(data.path), Path(model.path), Path(metrics.path) / f"{task}.json", Path(plots.path))
    for name, value in scores.items():
        scalars.log_metric(name, value)
    return qualifies(scores, cfg)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def export(
    data: Input[Dataset], model: Input[Model], export_config: dict, overrides: list, task: str, onnx: Output[Model]
):
    """Export to ONNX with a parity check against PyTorch (model.onnx + export.json)."""
    from pathlib import Path

    from components.config import step_config
    from components.core import tracking
    from components.release.export import export as step

    tracking.for_pipeline_step("")  # tracks nothing: the masking and the quick exit
    step(Path(data.path), Path(model.path), Path(onnx.path), step_config(export_config, overrides, "export", task))


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register(
    data: Input[Dataset],
    model: Input[Model],
    onnx: Input[Model],
    metrics: Input[Artifact],
    register_config: dict,
    overrides: list,
    task: str,
    mlflow_tracking_uri: str,
    registration: Output[Artifact],
):
    """Register the ONNX model under the task's name; move `champion` only when the new one is better."""
    from pathlib import Path

    from components.config import step_config
    from components.core import tracking
    from components.release.register import register as step

    tracking.for_pipeline_step(mlflow_tracking_uri)
    step(
        Path(data.path),
        Path(model.path),
        Path(onnx.path),
        Path(metrics.path) / f"{task}.json",
        Path(registration.path) / "registration.json",
        task,
        step_config(register_config, overrides, "register", task),
    )


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def mark_failed(status: dsl.PipelineTaskFinalStatus, task: str, mlflow_tracking_uri: str, pipeline_run: str):
    """The exit handler: when a step failed, mark the task's MLflow runs of this pipeline run FAILED."""
    from components.core import tracking
    from components.core.secrets import mask

    if status.state == "SUCCEEDED":
        return
    tracking.for_pipeline_step(mlflow_tracking_uri)
    message = mask(f"Kubeflow {status.state}: {status.pipeline_task_name}: {status.error_message or 'no message'}")
    ids = tracking.mark_pipeline_failed(task, pipeline_run, message)
    print(f"marked MLflow runs {', '.join(ids)} FAILED ({message})")


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def encoder_finetune(
    pretrained_data: Input[Dataset],
    pretrained_model: Input[Model],
    study_config: dict,
    dvc_remote: str,
    mlflow_tracking_uri: str,
    pipeline_run: str,
    encoder: Output[Model],
    metrics: Output[Artifact],
):
    """The masked-LM encoder fine-tuned on VADER vs from scratch (components/experiments/encoder.py): both variants,
    the exported pretrained one (model.onnx, graphs/, data/) and encoder_finetune.json. The labelled dataset
    comes as `ingest` gets it: from `dvc_remote`, or rebuilt from the built-in sources."""
    import shutil
    import tempfile
    from pathlib import Path

    from components.config import resolve_experiment
    from components.core import tracking
    from components.data.datastore import fetch
    from components.data.ingest import ingest
    from components.experiments.encoder import EncoderStudyConfig, encoder_study

    tracking.for_pipeline_step(mlflow_tracking_uri, pipeline_run)
    work = Path(tempfile.mkdtemp(prefix="encoder-study-"))
    pretrained = work / "pretrained"  # the layout encoder_study reads: checkpoint.pt, train.json, data/
    shutil.copytree(pretrained_model.path, pretrained)
    shutil.copytree(pretrained_data.path, pretrained / "data")
    cfg = resolve_experiment(EncoderStudyConfig, "encoder_finetune", {**study_config, "pretrained": str(pretrained)})
    fetch(cfg.dataset, work / "raw", dvc_remote) if dvc_remote else ingest(cfg.dataset, work / "raw")
    encoder_study(work / "raw", Path(encoder.path), Path(metrics.path) / "encoder_finetune.json", cfg)
