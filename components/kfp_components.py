"""Kubeflow Pipelines components: thin wrappers that call the very same step functions DVC and the tests call.

Every component runs in the one project image (`$DLPIPE_IMAGE`, default `dlpipe:latest`) and imports the
project inside its body, because KFP ships only the function's source to the container. Every output
artifact is a folder; inside it the files carry the names the DVC runner gives them, so the MLflow run
looks the same whichever runner produced it. Configs arrive as dicts (pipeline parameters) and are
validated by the same pydantic models, so a bad field fails with its params.yaml name.

No `from __future__ import annotations` here: KFP reads the annotations to type the component's I/O.
"""

import os

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

IMAGE = os.environ.get("DLPIPE_IMAGE", "dlpipe:latest")


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def ingest(prepare_config: dict, task: str, raw: Output[Dataset]):
    """Materialise the task's raw dataset (the dataset name lives in the prepare config)."""
    from pathlib import Path

    from components.config import PrepareConfig, validate
    from components.ingest import ingest as step

    step(validate(PrepareConfig, prepare_config, f"prepare.{task}").dataset, Path(raw.path))


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def prepare(raw: Input[Dataset], prepare_config: dict, task: str, data: Output[Dataset]):
    """Split and scale into `data` (splits + meta.json)."""
    from pathlib import Path

    from components.config import PrepareConfig, validate
    from components.prepare import prepare as step

    step(Path(raw.path), Path(data.path), validate(PrepareConfig, prepare_config, f"prepare.{task}"), task)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def augment(data: Input[Dataset], augment_config: dict, task: str, policy: Output[Artifact]):
    """The augmentation policy (augment.json) and its preview grid (preview.png)."""
    from pathlib import Path

    from components.augment import augment as step
    from components.config import AugmentConfig, validate

    step(Path(data.path), Path(policy.path), validate(AugmentConfig, augment_config, f"augment.{task}"), task)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def tune(
    data: Input[Dataset],
    policy: Input[Artifact],
    tune_config: dict,
    train_config: dict,
    task: str,
    mlflow_tracking_uri: str,
    best: Output[Artifact],
):
    """The whole study in one pod (also the no-tuning case): best_params.yaml, tuning.json, plots/."""
    import os
    from pathlib import Path

    from components.config import TuneConfig, validate
    from components.tune import tune as step

    if mlflow_tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = mlflow_tracking_uri
    cfg = validate(TuneConfig, tune_config, f"tune.{task}")
    step(Path(data.path), Path(best.path), Path(best.path) / "plots", task, cfg, train_config, Path(policy.path))


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def tune_setup(tune_config: dict, train_config: dict, task: str, mlflow_tracking_uri: str, study: Output[Artifact]):
    """Open the shared study (storage checked before any trial) and its MLflow run; study.json for the workers."""
    import json
    import os
    from pathlib import Path

    from components.config import TuneConfig, validate
    from components.tune import setup

    if mlflow_tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = mlflow_tracking_uri
    cfg, parent = setup(task, validate(TuneConfig, tune_config, f"tune.{task}"), train_config)
    Path(study.path).mkdir(parents=True, exist_ok=True)
    (Path(study.path) / "study.json").write_text(json.dumps({"config": cfg.model_dump(), "parent_run_id": parent}))


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def tune_worker(
    data: Input[Dataset],
    policy: Input[Artifact],
    study: Input[Artifact],
    train_config: dict,
    task: str,
    mlflow_tracking_uri: str,
):
    """One of the ParallelFor workers: trials until the shared study holds n_trials finished ones."""
    import json
    import os
    from pathlib import Path

    from components.config import TuneConfig
    from components.tune import work

    if mlflow_tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = mlflow_tracking_uri
    job = json.loads((Path(study.path) / "study.json").read_text())
    cfg = TuneConfig.model_validate(job["config"])
    work(Path(data.path), task, cfg, train_config, job["parent_run_id"], Path(policy.path))


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def tune_finalize(study: Input[Artifact], task: str, mlflow_tracking_uri: str, best: Output[Artifact]):
    """Best params, trial counts and plots of the finished study."""
    import json
    import os
    from pathlib import Path

    from components.config import TuneConfig
    from components.tune import finalize

    if mlflow_tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = mlflow_tracking_uri
    job = json.loads((Path(study.path) / "study.json").read_text())
    cfg = TuneConfig.model_validate(job["config"])
    finalize(Path(best.path), Path(best.path) / "plots", task, cfg, job["parent_run_id"])


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train(
    data: Input[Dataset],
    policy: Input[Artifact],
    best: Input[Artifact],
    train_config: dict,
    task: str,
    mlflow_tracking_uri: str,
    model: Output[Model],
):
    """Train into `model` (checkpoint.pt, history.csv, run.json: the MLflow run the later steps reopen)."""
    import os
    from pathlib import Path

    from components.config import TrainConfig, validate
    from components.train import train as step

    if mlflow_tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = mlflow_tracking_uri
    from components.tune import tuned_config

    cfg = validate(TrainConfig, tuned_config(train_config, Path(best.path) / "best_params.yaml"), f"train.{task}")
    step(Path(data.path), Path(model.path), cfg, task, progress=False, augment_dir=Path(policy.path))


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(
    data: Input[Dataset],
    model: Input[Model],
    task: str,
    mlflow_tracking_uri: str,
    metrics: Output[Artifact],
    plots: Output[Artifact],
    scalars: Output[Metrics],
):
    """Score on the test split: `metrics/<task>.json` for register, the same numbers as KFP UI scalars."""
    import os
    from pathlib import Path

    from components.evaluate import evaluate as step

    if mlflow_tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = mlflow_tracking_uri
    scores = step(Path(data.path), Path(model.path), Path(metrics.path) / f"{task}.json", Path(plots.path))
    for name, value in scores.items():
        scalars.log_metric(name, value)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def export(data: Input[Dataset], model: Input[Model], export_config: dict, task: str, onnx: Output[Model]):
    """Export to ONNX with a parity check against PyTorch (model.onnx + export.json)."""
    from pathlib import Path

    from components.config import ExportConfig, validate
    from components.export import export as step

    step(Path(data.path), Path(model.path), Path(onnx.path), validate(ExportConfig, export_config, f"export.{task}"))


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register(
    data: Input[Dataset],
    model: Input[Model],
    onnx: Input[Model],
    metrics: Input[Artifact],
    register_config: dict,
    task: str,
    mlflow_tracking_uri: str,
    registration: Output[Artifact],
):
    """Register the ONNX model under the task's name; move `champion` only when the new one is better."""
    import os
    from pathlib import Path

    from components.config import RegisterConfig, validate
    from components.register import register as step

    if mlflow_tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = mlflow_tracking_uri
    step(
        Path(data.path),
        Path(model.path),
        Path(onnx.path),
        Path(metrics.path) / f"{task}.json",
        Path(registration.path) / "registration.json",
        task,
        validate(RegisterConfig, register_config, f"register.{task}"),
    )


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def encoder_finetune(
    pretrained_data: Input[Dataset],
    pretrained_model: Input[Model],
    study_config: dict,
    mlflow_tracking_uri: str,
    encoder: Output[Model],
    metrics: Output[Artifact],
):
    """The masked-LM encoder fine-tuned on VADER vs from scratch (components/encoder_study.py): both variants,
    the exported pretrained one (model.onnx, graphs/, data/) and encoder_finetune.json."""
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from components.config import validate
    from components.encoder_study import EncoderStudyConfig, encoder_study
    from components.ingest import ingest

    if mlflow_tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = mlflow_tracking_uri
    work = Path(tempfile.mkdtemp(prefix="encoder-study-"))
    pretrained = work / "pretrained"  # the layout encoder_study reads: checkpoint.pt, train.json, data/
    shutil.copytree(pretrained_model.path, pretrained)
    shutil.copytree(pretrained_data.path, pretrained / "data")
    cfg = validate(EncoderStudyConfig, {**study_config, "pretrained": str(pretrained)}, "experiments.encoder_finetune")
    ingest(cfg.dataset, work / "raw")
    encoder_study(work / "raw", Path(encoder.path), Path(metrics.path) / "encoder_finetune.json", cfg)
