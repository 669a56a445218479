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
def train(data: Input[Dataset], train_config: dict, task: str, mlflow_tracking_uri: str, model: Output[Model]):
    """Train into `model` (checkpoint.pt, history.csv, run.json: the MLflow run the later steps reopen)."""
    import os
    from pathlib import Path

    from components.config import TrainConfig, validate
    from components.train import train as step

    if mlflow_tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = mlflow_tracking_uri
    cfg = validate(TrainConfig, train_config, f"train.{task}")
    step(Path(data.path), Path(model.path), cfg, task, progress=False)


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
