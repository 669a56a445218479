"""Typed step configuration read from params.yaml (keyed by stage, then task).

Config flows one way: params.yaml -> these models -> step function arguments -> MLflow params.
Every model forbids unknown keys, so a typo fails loudly with the field's full name.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from components.errors import DlpipeError

PARAMS_FILE = Path("params.yaml")
STAGES = ("prepare", "train", "export", "register")


class ConfigError(DlpipeError, ValueError):
    """A params.yaml entry is missing or invalid; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PrepareConfig(_Strict):
    """How raw data becomes scaled, split arrays and meta.json."""

    dataset: str = Field(description="dataset name under data/raw/ (see `dlpipe data list`)")
    objective: Literal["binary", "multiclass", "regression"]
    target: str = "target"
    val_size: float = Field(0.15, gt=0, lt=1)
    test_size: float = Field(0.15, gt=0, lt=1)
    seed: int = 42

    @model_validator(mode="after")
    def _sizes(self) -> PrepareConfig:
        if self.val_size + self.test_size >= 0.9:
            raise ValueError("val_size + test_size must leave at least 10% of rows for training")
        return self


class ModelConfig(_Strict):
    """Architecture name in the models registry plus its keyword arguments."""

    name: str = "ffn"
    hidden: list[int] = Field(default_factory=lambda: [64, 32])
    activation: Literal["relu", "tanh", "sigmoid"] = "relu"
    dropout: float = Field(0.0, ge=0, lt=1)
    norm: Literal["none", "batch", "layer"] = Field("none", description="normalisation after each hidden layer")
    residual: bool = Field(False, description="skip connections around hidden layers of equal width")
    init: Literal["auto", "kaiming", "xavier", "default"] = Field(
        "auto", description="weight init: auto = kaiming for relu, xavier for tanh/sigmoid"
    )

    def kwargs(self) -> dict[str, Any]:
        return self.model_dump(exclude={"name"})


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

    model: ModelConfig = Field(default_factory=ModelConfig)
    optimizer: Literal["gd", "momentum", "rmsprop", "adam", "adamw"] = "adam"
    lr: float = Field(1e-3, gt=0, description="learning rate")
    momentum: float = Field(0.9, ge=0, lt=1, description="for momentum and rmsprop")
    nesterov: bool = Field(False, description="Nesterov momentum (optimizer: momentum)")
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    loss: Literal["auto", "bce", "cross_entropy", "mse", "mae", "huber"] = "auto"
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="classification targets smoothed by this")
    batch_size: int | Literal["full"] = Field(32, description="'full' = batch GD, N = mini-batch, 1 = SGD")
    epochs: int = Field(100, ge=1)
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
    amp: Literal["none", "bf16", "fp16"] = Field("none", description="mixed precision: bf16 autocast, or fp16 + scaler")
    compile: bool = Field(False, description="torch.compile the model for training")
    channels_last: bool = Field(False, description="channels-last memory format (CNNs on GPU)")
    device_data_max_mb: float = Field(
        1024, ge=0, description="datasets up to this size live on the device; larger ones stream via a DataLoader"
    )
    num_workers: int = Field(2, ge=0, description="DataLoader workers (large datasets only)")
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
        if self.model.norm == "batch" and self.batch_size == 1:
            raise ValueError("batch_size 1 cannot train batch norm (one row has no batch statistics); use model.norm")
        return self


class ExportConfig(_Strict):
    """ONNX export settings; parity above `tolerance` fails the export."""

    opset: int = Field(20, ge=17)
    tolerance: float = Field(1e-4, gt=0)


class RegisterConfig(_Strict):
    """Champion promotion rule for the registered model."""

    primary_metric: str
    greater_is_better: bool = True
    alias: str = "champion"


STAGE_MODELS: dict[str, type[_Strict]] = {
    "prepare": PrepareConfig,
    "train": TrainConfig,
    "export": ExportConfig,
    "register": RegisterConfig,
}


def load_params(path: Path | str = PARAMS_FILE) -> dict[str, Any]:
    """Read params.yaml; a missing or malformed file is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping of stages at the top level")
    return params


def tasks(params: dict[str, Any]) -> list[str]:
    """Tasks are the keys of the prepare stage (every task is prepared)."""
    return list(params.get("prepare", {}))


def stage_config(params: dict[str, Any], stage: str, task: str) -> Any:
    """Validate params[stage][task] into the stage's model, naming the failing field on error."""
    model = STAGE_MODELS[stage]
    raw = params.get(stage, {}).get(task)
    if raw is None:
        if stage in ("prepare", "register"):
            raise ConfigError(f"params: {stage}.{task} is missing")
        raw = {}
    return validate(model, raw, f"{stage}.{task}")


def validate(model: type[_Strict], raw: dict[str, Any], where: str) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{where}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else f"{where}: {e['msg']}"
            for e in err.errors()
        )
        raise ConfigError(problems) from None


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key.sub=value` overrides (values parsed as YAML) to a copy of a stage's raw config."""
    out = copy.deepcopy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE")
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return out


def flatten(config: BaseModel) -> dict[str, Any]:
    """Flatten a config into dotted keys for MLflow params."""
    return dict(_flatten(config.model_dump(), ""))


def _flatten(d: dict[str, Any], prefix: str):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v
