"""params.yaml `train.<task>`: the generic training loop's hyperparameters, one field per flag."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from components.config.base import IMAGENET_LITE0, MINILM, MINILM_MODEL, _Strict
from components.config.models import AnyModel, ModelConfig


class EarlyStoppingConfig(_Strict):
    """Stop when `monitor` has not improved by `min_delta` for `patience` epochs; restore the best."""

    enabled: bool = True
    monitor: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    patience: int = Field(10, ge=1)
    min_delta: float = Field(0.0, ge=0)


class SchedulerConfig(_Strict):
    """Learning-rate schedule, after an optional linear warm-up (per step) of `warmup_epochs`."""

    name: Literal["none", "step", "cosine", "onecycle", "plateau"] = "none"
    warmup_epochs: int = Field(0, ge=0)
    step_size: int = Field(30, ge=1, description="step: epochs between decays")
    gamma: float = Field(0.1, gt=0, le=1, description="step: decay factor")
    min_lr: float = Field(0.0, ge=0, description="cosine: final learning rate")
    factor: float = Field(0.1, gt=0, lt=1, description="plateau: decay factor")
    patience: int = Field(5, ge=0, description="plateau: epochs without improvement of early_stopping.monitor")

    @model_validator(mode="after")
    def _onecycle(self) -> SchedulerConfig:
        if self.name == "onecycle" and self.warmup_epochs:
            raise ValueError("onecycle has its own warm-up; set warmup_epochs to 0")
        return self


class GradientConfig(_Strict):
    """Gradient clipping and the per-layer gradient-norm diagnostics (vanishing / exploding warnings)."""

    clip_norm: float | None = Field(None, gt=0, description="clip the total gradient norm to this")
    clip_value: float | None = Field(None, gt=0, description="clip every gradient element to +-this")
    track: bool = Field(True, description="record each layer's mean gradient norm every epoch")
    samples_per_epoch: int = Field(4, ge=1, description="steps per epoch whose gradient norms are averaged")
    vanish_below: float = Field(1e-6, ge=0, description="warn when a layer's gradient norm falls below")
    explode_above: float = Field(1e3, gt=0, description="warn when a layer's gradient norm rises above")


class TrainConfig(_Strict):
    """Hyperparameters of the generic training loop (one field per flag)."""

    model: AnyModel = Field(
        default_factory=ModelConfig, description="model.name: ffn | cnn | torchvision | rnn | transformer"
    )
    init_from: str | None = Field(
        None,
        description="start from models:/<name>@<alias>, a checkpoint.pt path, torchvision:<arch>, "
        "imagenet:efficientnet_lite0, or minilm "
        "(all-MiniLM-L6-v2's BERT weights: model as MINILM_MODEL, prepare text.tokenizer minilm)",
    )
    transfer: Literal["finetune", "feature_extractor"] = Field(
        "finetune", description="with init_from: train everything, or freeze the backbone and train the head"
    )
    backbone_lr_scale: float = Field(1.0, gt=0, le=1, description="finetune: backbone lr = lr x this")
    optimizer: Literal["gd", "momentum", "rmsprop", "adam", "adamw", "muon"] = Field(
        "adam", description="muon: Muon for the hidden nn.Linear matrices, AdamW for the rest (transformers, MLPs)"
    )
    lr: float = Field(1e-3, gt=0, description="learning rate")
    momentum: float = Field(0.9, ge=0, lt=1, description="for momentum, rmsprop and muon (Muon's own default: 0.95)")
    nesterov: bool = Field(False, description="Nesterov momentum (optimizer: momentum)")
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    loss: Literal["auto", "bce", "cross_entropy", "mse", "mae", "huber"] = "auto"
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="classification targets smoothed by this")
    batch_size: int | Literal["full"] = Field(32, description="'full' = batch GD, N = mini-batch, 1 = SGD")
    epochs: int = Field(100, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1, description="cap on batches per epoch (default: the whole split)")
    l1: float = Field(0.0, ge=0, description="L1 penalty on weights, added to the loss")
    l2: float = Field(
        0.0, ge=0, description="L2: coupled weight decay (in the gradient) except adamw, where it is decoupled"
    )
    gradients: GradientConfig = Field(default_factory=GradientConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    checkpoint_interval_s: float = Field(
        30.0, ge=0, description="save checkpoint.pt at most this often (seconds; 0 = every epoch) and at the end"
    )
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["none", "bf16", "fp16", "auto"] = Field(
        "none",
        description="mixed precision: bf16 autocast, fp16 + scaler (CUDA), or auto: bf16 where the hardware "
        "computes it natively (a CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX), else none",
    )
    compile: bool = Field(False, description="torch.compile the model for training")
    channels_last: bool = Field(False, description="channels-last memory format (CNNs on GPU)")
    device_data_max_mb: float = Field(
        1024, ge=0, description="datasets up to this size live on the device; larger ones stream via a DataLoader"
    )
    num_workers: int = Field(2, ge=0, description="DataLoader workers (large datasets only)")
    threads: int | None = Field(
        None, ge=1, description="CPU threads for torch (None = its default); small RNNs run faster on 1"
    )
    gpu: bool = Field(False, description="request a GPU for the train step on Kubeflow")
    retries: int = Field(2, ge=0, description="Kubeflow retries of the train step")

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("batch_size must be 'full' or a positive integer")
        return value

    @model_validator(mode="after")
    def _batch_norm_needs_batches(self) -> TrainConfig:
        if self.model.batch_norm and self.batch_size == 1:
            raise ValueError("batch_size 1 cannot train batch norm (one row has no batch statistics); use model.norm")
        return self

    @model_validator(mode="after")
    def _torchvision_init(self) -> TrainConfig:
        tv = self.init_from is not None and self.init_from.startswith("torchvision:")
        if tv and (self.model.name != "torchvision" or self.init_from != f"torchvision:{self.model.arch}"):
            raise ValueError(f"init_from {self.init_from!r} needs model {{name: torchvision, arch: <the same>}}")
        return self

    @model_validator(mode="after")
    def _lite0_init(self) -> TrainConfig:
        if self.init_from == IMAGENET_LITE0 and self.model.name != "efficientnet_lite0":
            raise ValueError(f"init_from {IMAGENET_LITE0} needs model {{name: efficientnet_lite0}}")
        return self

    @model_validator(mode="after")
    def _minilm_init(self) -> TrainConfig:
        if self.init_from != MINILM:
            return self
        model = self.model.model_dump()
        model["d_ff"] = model.get("d_ff") or 4 * model.get("d_model", 0)  # None means 4 x d_model
        wrong = {k: model.get(k) for k, v in MINILM_MODEL.items() if model.get(k) != v}
        if model["name"] != "transformer" or wrong:
            need = ", ".join(f"{k}: {v}" for k, v in MINILM_MODEL.items())
            got = ", ".join(f"{k}: {v}" for k, v in wrong.items()) if model["name"] == "transformer" else model["name"]
            raise ValueError(f"init_from minilm needs model {{name: transformer, {need}}}; this model has {got}")
        return self
