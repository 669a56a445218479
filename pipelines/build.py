"""Kubeflow pipelines built from params.yaml: one per task, and `all`, which runs every selected task in parallel
branches. Each task: ingest -> prepare -> augment -> tune -> train -> evaluate -> export -> `dsl.If` (promotion
gate) register, inside an exit handler that marks the task's MLflow runs FAILED when a step fails. The task
that pretrains experiments.encoder_finetune's encoder (its `pretrained` folder's name) also fine-tunes it.

The stage configs become dict-typed pipeline parameters whose defaults are the task's params.yaml blocks
(validated here, so a typo fails at compile time, not in the cluster). A run changes them with
`params_overrides` (`stage.task.key=value` items, applied and validated by each step) or, per task, by passing a
whole block. Compile-time only: `train.<task>.gpu` / `retries`, tune.<task>.workers > 1 (fan-out into a
`dsl.ParallelFor`), and `kubeflow.<task>` (requests, limits, backoff, /dev/shm, secret names).

No `from __future__ import annotations`: KFP reads the pipeline's annotations as types, and a string
"dict" fails with "Artifacts must have both a schema_title and a schema_version".
"""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kfp import dsl, kubernetes

from components import kubeflow as c
from components.config import STAGES, ConfigError, KubeflowConfig, Resources, kubeflow_config, stage_config, tasks
from components.core.secrets import mask

NO_OVERRIDES: list = []  # a shared default, never mutated
GPU = "nvidia.com/gpu"
CHECKPOINTS = "/checkpoints"  # kubeflow.<task>.checkpoint_pvc's mount on the train step
CACHED = ("ingest", "prepare")  # pure functions of their inputs: safe to reuse; register writes the registry


class _Steps:
    """Adds one task's steps to the pipeline being defined, with its cluster settings (requests, GPUs, retries,
    placement). Made inside the `@dsl.pipeline` function, whose parameters it receives."""

    def __init__(self, task: str, cfgs: dict[str, Any], kube: KubeflowConfig, args: dict[str, Any]) -> None:
        self.task, self.cfgs, self.kube, self.args = task, cfgs, kube, args
        self.gpu, self.retries = cfgs["train"].gpu, cfgs["train"].retries
        self.mine = {"task": task, "overrides": args["params_overrides"]}
        self.uri = {"mlflow_tracking_uri": args["mlflow_tracking_uri"]}
        self.tracked = {**self.uri, "pipeline_run": dsl.PIPELINE_JOB_ID_PLACEHOLDER}
        self.knobs = {"tune_trials": args["tune_trials"], "tune_workers": args["tune_workers"]}

    def light(self, op: dsl.PipelineTask) -> dsl.PipelineTask:
        return _cluster(op, self.kube, self.kube.steps, image=self.args["image"])

    def heavy(self, op: dsl.PipelineTask, gpus: Any = 1) -> dsl.PipelineTask:
        a, kube = self.args, self.kube
        placed = {"image": a["image"], "node_selector": a["node_selector"], "tolerations": a["tolerations"]}
        op = _cluster(op, kube, kube.train, **placed, gpus=gpus if self.gpu else None)
        return self.retried(op)

    def retried(self, op: dsl.PipelineTask) -> dsl.PipelineTask:
        kube = self.kube
        return op.set_retry(self.retries, kube.retry_backoff, kube.retry_backoff_factor, kube.retry_backoff_max)

    def data(self) -> dict[str, Any]:
        """ingest -> prepare -> augment: the prepared data and the augmentation policy."""
        a, mine = self.args, self.mine
        ingest = c.ingest(prepare_config=a["prepare_config"], dvc_remote=a["dvc_remote"], **mine)
        data = self.light(c.prepare(raw=self.light(ingest).outputs["raw"], prepare_config=a["prepare_config"], **mine))
        policy = self.light(c.augment(data=data.outputs["data"], augment_config=a["augment_config"], **mine))
        return {"data": data.outputs["data"], "policy": policy.outputs["policy"]}

    def tune(self, inputs: dict[str, Any]) -> Any:
        """The study: one pod running tune.workers processes, or one pod per worker on a shared study."""
        a, mine, tracked = self.args, self.mine, self.tracked
        configs = {"tune_config": a["tune_config"], "train_config": a["train_config"]}
        if self.cfgs["tune"].n_trials == 0 or self.cfgs["tune"].workers == 1:
            return self.heavy(c.tune(**inputs, **configs, **mine, **self.knobs, **tracked)).outputs["best"]
        setup = self.light(c.tune_setup(**configs, **mine, **self.knobs, **tracked))  # storage: PostgreSQL
        with dsl.ParallelFor(items=setup.outputs["Output"], name="tune-workers") as _:
            study = setup.outputs["study"]
            worker = self.heavy(c.tune_worker(**inputs, study=study, train_config=a["train_config"], **mine, **tracked))
        return self.light(c.tune_finalize(study=study, task=self.task, **self.uri).after(worker)).outputs["best"]

    def train(self, inputs: dict[str, Any], best: Any) -> Any:
        """The train step in this pod (GPUs, DDP on one node), or a TrainJob that this pod launches and waits for."""
        a, kube, gpu_count = self.args, self.kube, self.args["gpu_count"]
        common = {**inputs, "best": best, "train_config": a["train_config"], **self.mine, **self.tracked}
        if kube.distributed is None:
            root = CHECKPOINTS if kube.checkpoint_pvc else ""
            trained = self.heavy(
                c.train(**common, gpus=gpu_count if self.gpu else 0, checkpoint_root=root), gpus=gpu_count
            )
            if kube.checkpoint_pvc:  # outlives the pod: a retry resumes from the last checkpoint
                kubernetes.mount_pvc(trained, pvc_name=kube.checkpoint_pvc, mount_path=CHECKPOINTS)
            return trained.outputs["model"]
        job = {"distributed": kube.distributed.model_dump(), "secret_names": _secret_names(kube)}
        launch = self.retried(self.light(c.train_distributed(**common, image=a["image"], **job)))
        kubernetes.mount_pvc(launch, pvc_name=kube.distributed.workspace_pvc, mount_path="/workspace")
        return launch.outputs["model"]

    def release(self, data: Any, model: Any) -> None:
        """evaluate, export, and register behind the promotion gate (`dsl.If` on evaluate's verdict)."""
        a, mine, uri = self.args, self.mine, self.uri
        scored = self.light(c.evaluate(data=data, model=model, register_config=a["register_config"], **mine, **uri))
        onnx = self.light(c.export(data=data, model=model, export_config=a["export_config"], **mine)).outputs["onnx"]
        with dsl.If(scored.outputs["Output"] == True, name="promote"):  # noqa: E712 (a KFP condition)
            metrics = scored.outputs["metrics"]
            registered = c.register(
                data=data, model=model, onnx=onnx, metrics=metrics, register_config=a["register_config"], **mine, **uri
            )
            self.light(registered).set_caching_options(enable_caching=False)  # it writes to the registry

    def finetune(self, data: Any, model: Any, study_config: dict[str, Any]) -> None:
        """experiments.encoder_finetune on the encoder this task pretrained."""
        run = c.encoder_finetune(
            pretrained_data=data,
            pretrained_model=model,
            study_config=study_config,
            dvc_remote=self.args["dvc_remote"],
            **self.tracked,
        )
        self.heavy(run, gpus=self.args["gpu_count"])


def build_pipeline(task: str, params: dict[str, Any]) -> Any:
    """Return the `@dsl.pipeline` for `task`."""
    if task not in tasks(params):
        raise ConfigError(f"unknown task {task!r}; tasks in params: {', '.join(tasks(params))}")
    cfgs = {stage: stage_config(params, stage, task) for stage in STAGES}  # a typo fails here, not in the cluster
    # The compiled pipeline is shared: a password in a block (tune.storage) is masked, the steps get it from the
    # Secret (OPTUNA_STORAGE; components/tune/study.py reads it when tune.storage is masked).
    raw = {stage: mask(params.get(stage, {}).get(task) or {}) for stage in STAGES}
    kube = kubeflow_config(params, task)
    finetune = params.get("experiments", {}).get("encoder_finetune")
    finetune = finetune if finetune and Path(finetune.get("pretrained", "")).name == task else None

    @dsl.pipeline(
        name=f"dlpipe-{task.replace('_', '-')}", description=f"dlpipe task {task}: raw data to a registered ONNX model"
    )
    def pipeline(
        params_overrides: list = NO_OVERRIDES,
        image: str = c.IMAGE,
        mlflow_tracking_uri: str = "",
        dvc_remote: str = "",
        gpu_count: int = 1 if cfgs["train"].gpu else 0,
        tune_trials: int = -1,
        tune_workers: int = -1,
        node_selector: dict = kube.node_selector,
        tolerations: list = kube.tolerations,
        prepare_config: dict = raw["prepare"],
        augment_config: dict = raw["augment"],
        tune_config: dict = raw["tune"],
        train_config: dict = raw["train"],
        export_config: dict = raw["export"],
        register_config: dict = raw["register"],
    ):
        steps = _Steps(task, cfgs, kube, dict(locals()))
        failed = steps.light(c.mark_failed(task=task, **steps.tracked)).set_caching_options(enable_caching=False)
        with dsl.ExitHandler(failed, name=f"{task.replace('_', '-')}-steps"):
            inputs = steps.data()
            model = steps.train(inputs, steps.tune(inputs))
            steps.release(inputs["data"], model)
            if finetune is not None:  # this task pretrains the encoder that experiments.encoder_finetune fine-tunes
                steps.finetune(inputs["data"], model, finetune)

    return pipeline


def build_all(params: dict[str, Any]) -> Any:
    """Return the `dlpipe-all` pipeline: every task of params.yaml in its own branch, run when the pipeline
    parameter `tasks` names it. Shared parameters pass through; each task's own blocks are its defaults."""
    names = tasks(params)
    per_task = {task: build_pipeline(task, params) for task in names}
    kube = kubeflow_config(params, "all")

    @dsl.pipeline(name="dlpipe-all", description="dlpipe: every task, raw data to registered ONNX models")
    def pipeline(
        tasks: list = names,
        params_overrides: list = NO_OVERRIDES,
        image: str = c.IMAGE,
        mlflow_tracking_uri: str = "",
        dvc_remote: str = "",
        gpu_count: int = 1,
        tune_trials: int = -1,
        tune_workers: int = -1,
        node_selector: dict = kube.node_selector,
        tolerations: list = kube.tolerations,
    ):
        for task, task_pipeline in per_task.items():
            selected = c.select(tasks=tasks, task=task).set_display_name(f"select-{task}")
            _cluster(selected, kube, kube.steps, image=image)
            with dsl.If(selected.output == True, name=f"run-{task.replace('_', '-')}"):  # noqa: E712
                task_pipeline(
                    params_overrides=params_overrides,
                    image=image,
                    mlflow_tracking_uri=mlflow_tracking_uri,
                    dvc_remote=dvc_remote,
                    gpu_count=gpu_count,
                    tune_trials=tune_trials,
                    tune_workers=tune_workers,
                    node_selector=node_selector,
                    tolerations=tolerations,
                ).set_display_name(task)

    return pipeline


def build(task: str, params: dict[str, Any]) -> Any:
    """`all` or one task's pipeline, defined on a new thread.

    kfp's resource setters (set_cpu_request, ...) call inspect.stack(), which reads every frame of the calling
    stack, with its source lines, some 600 times for `all`: under a deep caller (pytest, a notebook) defining `all`
    took 35-40 s instead of 2-3. A new thread starts with a stack a few frames deep."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        defined = pool.submit(build_all, params) if task == "all" else pool.submit(build_pipeline, task, params)
        return defined.result()


def _secret_names(kube: KubeflowConfig) -> dict[str, str]:
    return {"mlflow_secret": kube.mlflow_secret, "s3_secret": kube.s3_secret, "optuna_secret": kube.optuna_secret}


def _cluster(
    op: dsl.PipelineTask,
    kube: KubeflowConfig,
    res: Resources,
    image: Any,
    node_selector: Any = None,
    tolerations: Any = None,
    gpus: Any = None,
) -> dsl.PipelineTask:
    """Cluster settings of one task: image, requests/limits, credentials from Secrets (optional: a cluster
    without them uses the pod's defaults), and for heavy steps GPUs, /dev/shm and placement."""
    op.set_container_image(image)
    op.set_cpu_request(res.cpu_request).set_cpu_limit(res.cpu_limit)
    op.set_memory_request(res.memory_request).set_memory_limit(res.memory_limit)
    mlflow_env = {
        "uri": "MLFLOW_TRACKING_URI",
        "username": "MLFLOW_TRACKING_USERNAME",
        "password": "MLFLOW_TRACKING_PASSWORD",
    }
    kubernetes.use_secret_as_env(op, kube.mlflow_secret, mlflow_env, optional=True)
    s3_env = {"access_key": "AWS_ACCESS_KEY_ID", "secret_key": "AWS_SECRET_ACCESS_KEY", "endpoint": "AWS_ENDPOINT_URL"}
    kubernetes.use_secret_as_env(op, kube.s3_secret, s3_env, optional=True)
    kubernetes.use_secret_as_env(op, kube.s3_secret, {"endpoint": "MLFLOW_S3_ENDPOINT_URL"}, optional=True)
    if op.component_spec.name.startswith("tune"):
        kubernetes.use_secret_as_env(op, kube.optuna_secret, {"storage": "OPTUNA_STORAGE"}, optional=True)
    if gpus is not None:
        op.set_accelerator_type(GPU).set_accelerator_limit(gpus)
    if node_selector is not None:
        kubernetes.empty_dir_mount(
            op, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=kube.shm_size
        )
        kubernetes.add_node_selector_json(op, node_selector)
        kubernetes.add_toleration_json(op, tolerations)
    if op.component_spec.name in CACHED:
        op.set_caching_options(enable_caching=True)
    return op
