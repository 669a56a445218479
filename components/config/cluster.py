"""params.yaml `kubeflow.<task>`: what a task's pods ask a cluster for (compile time only; kfp.local ignores it)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    Field,
)

from components.config.base import _Strict

Cpu = Annotated[str, Field(pattern=r"^([0-9]*[.])?[0-9]+m?$")]  # the forms KFP's compiler accepts


Memory = Annotated[str, Field(pattern=r"^[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?$")]


Duration = Annotated[str, Field(pattern=r"^[0-9]+s$")]


class Resources(_Strict):
    """Kubernetes requests and limits of one pod (CPU in cores or millicores, memory like 4Gi)."""

    cpu_request: Cpu
    cpu_limit: Cpu
    memory_request: Memory
    memory_limit: Memory


class DistributedConfig(_Strict):
    """Train as a Kubeflow Trainer TrainJob (torch-distributed runtime): `nodes` x `gpus_per_node` processes of
    the project's own `torchrun dlpipe train`. Outside a cluster the step runs torchrun on this machine."""

    nodes: int = Field(2, ge=1)
    gpus_per_node: int = Field(1, ge=0, description="0 = one CPU process per node (gloo)")
    runtime: str = Field("torch-distributed", description="the ClusterTrainingRuntime the TrainJob references")
    workspace_pvc: str = Field(
        "dlpipe-workspace", description="a ReadWriteMany PVC mounted by the step and the TrainJob's pods"
    )
    timeout_s: int = Field(24 * 3600, ge=60, description="give up waiting for the TrainJob after this long")


class KubeflowConfig(_Strict):
    """params.yaml `kubeflow.<task>` (optional): how the task's pods ask a cluster for resources. Compile time only;
    kfp.local ignores all of it."""

    steps: Resources = Field(
        default_factory=lambda: Resources(cpu_request="500m", cpu_limit="2", memory_request="1Gi", memory_limit="4Gi"),
        description="ingest, prepare, augment, evaluate, export, register",
    )
    train: Resources = Field(
        default_factory=lambda: Resources(cpu_request="2", cpu_limit="8", memory_request="4Gi", memory_limit="16Gi"),
        description="train and the tuning workers",
    )
    retry_backoff: Duration = Field("30s", description="train/tune: wait before the first retry")
    retry_backoff_factor: float = Field(2.0, ge=1, description="each further retry waits this many times longer")
    retry_backoff_max: Duration = Field("3600s", description="stop retrying after this long")
    shm_size: Memory = Field("2Gi", description="/dev/shm (in memory) of train and tune: DataLoader workers, NCCL")
    node_selector: dict[str, str] = Field(default_factory=dict, description="train/tune pods: node labels to match")
    tolerations: list[dict[str, Any]] = Field(default_factory=list, description="train/tune pods: taints they accept")
    mlflow_secret: str = Field("dlpipe-mlflow", description="Secret: username, password -> MLFLOW_TRACKING_*")
    s3_secret: str = Field("dlpipe-s3", description="Secret: access_key, secret_key, endpoint -> AWS_* / S3 endpoint")
    optuna_secret: str = Field("dlpipe-optuna", description="Secret: storage -> OPTUNA_STORAGE (PostgreSQL URL)")
    distributed: DistributedConfig | None = Field(None, description="train as a TrainJob over several nodes")
    checkpoint_pvc: str | None = Field(
        None,
        description="a PVC mounted at /checkpoints on the train step: a retried attempt resumes from the last "
        "checkpoint (<pvc>/<run id>/<task>) instead of starting over; unset: a retry trains from the start",
    )
