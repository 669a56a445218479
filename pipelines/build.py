"""One Kubeflow pipeline per task, built from params.yaml: ingest -> prepare -> augment -> train -> evaluate
-> export -> register.

The stage configs become dict-typed pipeline parameters whose defaults are the task's params.yaml blocks
(validated here, so a typo fails at compile time, not in the cluster); a run can override any of them.
`train.<task>.gpu` and `train.<task>.retries` shape the compiled train task itself, so they are read at
compile time only.

No `from __future__ import annotations`: KFP reads the pipeline's annotations as types, and a string
"dict" fails with "Artifacts must have both a schema_title and a schema_version".
"""

from pathlib import Path
from typing import Any

from kfp import dsl

from components import kfp_components as c
from components.config import STAGES, ConfigError, stage_config, tasks


def build_pipeline(task: str, params: dict[str, Any]) -> Any:
    """Return the `@dsl.pipeline` for `task`; its output is the evaluate step's metrics folder."""
    if task not in tasks(params):
        raise ConfigError(f"unknown task {task!r}; tasks in params: {', '.join(tasks(params))}")
    cfgs = {stage: stage_config(params, stage, task) for stage in STAGES}  # a typo fails here, not in the cluster
    raw = {stage: params.get(stage, {}).get(task) or {} for stage in STAGES}
    finetune = params.get("experiments", {}).get("encoder_finetune")
    finetune = finetune if finetune and Path(finetune.get("pretrained", "")).name == task else None

    @dsl.pipeline(
        name=f"dlpipe-{task.replace('_', '-')}", description=f"dlpipe task {task}: raw data to a registered ONNX model"
    )
    def pipeline(
        prepare_config: dict = raw["prepare"],
        augment_config: dict = raw["augment"],
        tune_config: dict = raw["tune"],
        train_config: dict = raw["train"],
        export_config: dict = raw["export"],
        register_config: dict = raw["register"],
        mlflow_tracking_uri: str = "",
    ) -> dsl.Artifact:
        raw_data = c.ingest(prepare_config=prepare_config, task=task).outputs["raw"]
        data = c.prepare(raw=raw_data, prepare_config=prepare_config, task=task).outputs["data"]
        policy = c.augment(data=data, augment_config=augment_config, task=task).outputs["policy"]
        uri = {"task": task, "mlflow_tracking_uri": mlflow_tracking_uri}
        if cfgs["tune"].n_trials == 0 or cfgs["tune"].workers == 1:
            best = c.tune(data=data, policy=policy, tune_config=tune_config, train_config=train_config, **uri)
            best = best.outputs["best"]
        else:  # workers fan out over one shared study (tune.storage / $OPTUNA_STORAGE must be shared, e.g. PostgreSQL)
            study = c.tune_setup(tune_config=tune_config, train_config=train_config, **uri).outputs["study"]
            with dsl.ParallelFor(items=list(range(cfgs["tune"].workers))) as _:
                worker = c.tune_worker(data=data, policy=policy, study=study, train_config=train_config, **uri)
                worker.set_retry(num_retries=cfgs["train"].retries)
                if cfgs["train"].gpu:
                    worker.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
            best = c.tune_finalize(study=study, **uri).after(worker).outputs["best"]
        trained = c.train(
            data=data,
            policy=policy,
            best=best,
            train_config=train_config,
            task=task,
            mlflow_tracking_uri=mlflow_tracking_uri,
        )
        trained.set_retry(num_retries=cfgs["train"].retries)
        if cfgs["train"].gpu:
            trained.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
        model = trained.outputs["model"]
        scored = c.evaluate(data=data, model=model, task=task, mlflow_tracking_uri=mlflow_tracking_uri)
        onnx = c.export(data=data, model=model, export_config=export_config, task=task).outputs["onnx"]
        c.register(
            data=data,
            model=model,
            onnx=onnx,
            metrics=scored.outputs["metrics"],
            register_config=register_config,
            task=task,
            mlflow_tracking_uri=mlflow_tracking_uri,
        ).set_caching_options(enable_caching=False)  # it writes to the registry: never skip it
        if finetune is not None:  # this task pretrains the encoder that experiments.encoder_finetune fine-tunes
            c.encoder_finetune(
                pretrained_data=data,
                pretrained_model=model,
                study_config=finetune,
                mlflow_tracking_uri=mlflow_tracking_uri,
            )
        return scored.outputs["metrics"]

    return pipeline
