"""Typed step configuration read from params.yaml (keyed by stage, then task).

Config flows one way: params.yaml -> these models -> step function arguments -> MLflow params.
Every model forbids unknown keys, so a typo fails loudly with the field's full name.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from components.core.errors import DlpipeError

PARAMS_FILE = Path("params.yaml")
STAGES = ("prepare", "augment", "tune", "train", "export", "register")
MINILM = "minilm"  # init_from / text.tokenizer: all-MiniLM-L6-v2 (components/data/text/minilm.py)
MINILM_MAX_LEN = 512  # its position table
# The model block that is all-MiniLM-L6-v2's BERT encoder (its config.json), so its weights load one to one.
MINILM_MODEL = {
    "arch": "encoder",
    "d_model": 384,
    "n_layers": 6,
    "n_heads": 12,
    "d_ff": 1536,
    "positional": "learned",
    "norm": "post",
    "embed_norm": True,
    "norm_eps": 1e-12,
}


class ConfigError(DlpipeError, ValueError):
    """A params.yaml entry is missing or invalid; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LMConfig(_Strict):
    """prepare.<task>.lm: a corpus -> token windows (causal_lm, masked_lm), or tab-separated pairs -> padded ids
    (seq2seq)."""

    block_size: int = Field(128, ge=4, description="causal_lm, masked_lm: tokens per window (the context length)")
    stride: int | None = Field(None, ge=1, description="causal_lm: step between training windows (default block_size)")
    val_windows: int = Field(256, ge=1, description="causal_lm, masked_lm: windows checked every epoch (test: all)")
    max_len: int = Field(64, ge=4, description="seq2seq: longest source or target in tokens, BOS/EOS included")
    vocab_size: int = Field(4000, ge=16, description="masked_lm: WordPiece vocabulary, special tokens included")
    mask_rate: float = Field(0.15, gt=0, lt=1, description="masked_lm: share of tokens to predict (80/10/10 rule)")
    mask_copies: int = Field(
        1, ge=1, le=50, description="masked_lm: masked copies of each training window, each with its own draw"
    )


class TextConfig(_Strict):
    """prepare.<task>.text: a text dataset (data.csv with `text` and `target`) tokenised for sequence models.

    The tokenizer (components/data/text/tokenization.py) is trained on the training split only and saved as
    tokenizer.json beside the splits; serving reads it from there."""

    column: str = Field("text", description="the text column of data.csv")
    tokenizer: Literal["wordpiece", "bpe", "char", "minilm"] = Field(
        "wordpiece",
        description="train subwords, byte-level BPE or chars; minilm = the pretrained all-MiniLM-L6-v2's 30,522-token "
        "WordPiece (for train.init_from: minilm; vocab_size, min_frequency, lowercase do not apply)",
    )
    vocab_size: int = Field(8000, ge=16, description="tokenizer vocabulary, special tokens included")
    min_frequency: int = Field(2, ge=1, description="a token must occur this often in training")
    lowercase: bool = True
    max_length: int = Field(64, ge=4, description="tokens per text with [CLS]/[SEP]; longer texts keep their start")
    max_chars: int = Field(5000, ge=1, description="serving refuses longer texts (413); tokens are truncated anyway")
    dedupe: bool = Field(True, description="drop repeated texts (keeping the first) so no text is in two splits")
    tokenizer_from: str | None = Field(
        None, description="use this tokenizer.json (e.g. a pretrained encoder's) instead of training one"
    )
    word2vec_dim: int = Field(0, ge=0, description="train skip-gram vectors of this size on the train split (0 = no)")
    word2vec_epochs: int = Field(3, ge=1)
    word2vec_window: int = Field(4, ge=1)

    @model_validator(mode="after")
    def _minilm(self) -> TextConfig:
        if self.tokenizer == MINILM and self.tokenizer_from:
            raise ValueError("tokenizer minilm is a pretrained vocabulary already; drop tokenizer_from")
        if self.tokenizer == MINILM and self.max_length > MINILM_MAX_LEN:
            raise ValueError(f"tokenizer minilm: the MiniLM has {MINILM_MAX_LEN} positions, max_length is larger")
        return self


class SeriesConfig(_Strict):
    """prepare.<task>.series: a univariate time series (data.csv with `date`, `value`) cut into windows.

    The split is chronological (train span, then validation, then test; nothing shuffled across it); the
    scaler is fitted on the training span only; a window belongs to the span its targets fall in."""

    freq: str | None = Field(None, description="pandas frequency (W-SAT, D, MS...); None = inferred from the dates")
    fill: Literal["interpolate", "ffill", "none"] = Field("interpolate", description="missing readings; none = refuse")
    window: int = Field(104, ge=2, description="history steps the model reads (also the minimum history served)")
    horizon: int = Field(8, ge=1, description="steps forecast at once (H)")
    stride: int = Field(1, ge=1, description="steps between consecutive training windows")
    seasonal_period: int = Field(52, ge=1, description="season length of the seasonal-naive baseline")


class PrepareConfig(_Strict):
    """How raw data becomes scaled, split arrays and meta.json."""

    dataset: str = Field(description="dataset name under data/raw/ (see `dlpipe data list`)")
    objective: Literal["binary", "multiclass", "regression", "causal_lm", "masked_lm", "seq2seq"]
    target: str = "target"
    val_size: float = Field(0.15, gt=0, lt=1)
    test_size: float = Field(0.15, gt=0, lt=1)
    seed: int = 42
    train_limit: int | None = Field(None, ge=10, description="keep only this many (stratified) training rows")
    image_size: int | None = Field(None, ge=4, description="images: resize to this square size (None = as stored)")
    grayscale: bool | None = Field(None, description="images: convert to grayscale (None = as stored)")
    text: TextConfig | None = Field(None, description="a text dataset: tokenizer settings (see TextConfig)")
    series: SeriesConfig | None = Field(None, description="a time series: windows and horizon (see SeriesConfig)")
    lm: LMConfig | None = Field(None, description="causal_lm windows / seq2seq pairs (see LMConfig)")

    @model_validator(mode="after")
    def _sizes(self) -> PrepareConfig:
        if self.val_size + self.test_size >= 0.9:
            raise ValueError("val_size + test_size must leave at least 10% of rows for training")
        if self.text is not None and self.series is not None:
            raise ValueError("a dataset is text or a series, not both")
        if self.text is not None and self.objective == "regression":
            raise ValueError("text datasets are classified: use objective binary or multiclass")
        if self.series is not None and self.objective != "regression":
            raise ValueError("series are forecast: use objective regression")
        return self


class ModelConfig(_Strict):
    """The feed-forward network (models/ffn.py): hidden sizes, activation, normalisation."""

    name: Literal["ffn"] = "ffn"
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

    @property
    def batch_norm(self) -> bool:
        return self.norm == "batch"


class CNNConfig(_Strict):
    """The convolutional network (models/cnn.py): conv blocks, pooling, global pooling, classifier head."""

    name: Literal["cnn"] = "cnn"
    channels: list[int] = Field(default_factory=lambda: [32, 64], description="output channels of each conv block")
    convs_per_block: int = Field(2, ge=1, description="conv layers per block")
    kernel: int = Field(3, ge=1, description="square kernel size")
    padding: Literal["same", "valid"] | int = Field("same", description="'same' | 'valid' | pixels of zero padding")
    stride: int = Field(1, ge=1, description="stride of each block's first conv")
    pool: Literal["max", "avg", "none"] = Field("max", description="pooling after each block")
    pool_size: int = Field(2, ge=2)
    batch_norm: bool = True
    residual: bool = Field(False, description="residual blocks: x + convs(x), 1x1 projection when shapes differ")
    activation: Literal["relu", "tanh", "sigmoid"] = "relu"
    dropout: float = Field(0.0, ge=0, lt=1, description="2-D dropout after each block")
    global_pool: Literal["avg", "max", "flatten"] = Field("avg", description="before the head; flatten keeps space")
    head: list[int] = Field(default_factory=list, description="hidden sizes of the classifier head")
    head_dropout: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _shapes(self) -> CNNConfig:
        if self.padding == "same" and self.kernel % 2 == 0:
            raise ValueError("padding 'same' needs an odd kernel")
        if self.residual and self.padding != "same":
            raise ValueError("residual blocks need padding 'same' (the skip must match the block's output)")
        return self

    def kwargs(self) -> dict[str, Any]:
        return self.model_dump(exclude={"name"})


class TorchvisionConfig(_Strict):
    """A torchvision architecture (resnet18, mobilenet_v3_small) with a new head; weights from init_from."""

    name: Literal["torchvision"] = "torchvision"
    arch: Literal["resnet18", "mobilenet_v3_small"] = "resnet18"

    def kwargs(self) -> dict[str, Any]:
        return self.model_dump(exclude={"name"})

    @property
    def batch_norm(self) -> bool:
        return True


ENCODER_ONLY = ("norm", "embed_norm", "norm_eps", "pool")  # TransformerConfig fields of arch encoder only


class TransformerConfig(_Strict):
    """Transformers (models/transformer/): decoder (GPT-like), encoder (BERT-like), encoder_decoder."""

    name: Literal["transformer"] = "transformer"
    arch: Literal["decoder", "encoder", "encoder_decoder"] = "decoder"
    d_model: int = Field(128, ge=8, description="width C of every token vector")
    n_layers: int = Field(4, ge=1, description="blocks per stack (encoder_decoder: each side)")
    n_heads: int = Field(4, ge=1, description="attention heads; d_model must divide by it")
    d_ff: int | None = Field(None, ge=8, description="feed-forward width (default 4 x d_model)")
    dropout: float = Field(0.0, ge=0, lt=1)
    positional: Literal["learned", "sinusoidal"] = "learned"
    tie_weights: bool = Field(True, description="the LM head reuses the token embedding matrix")
    head: Literal["cls", "mlm"] = Field("cls", description="encoder: [CLS] classifier or masked-LM head")
    norm: Literal["pre", "post"] = Field("pre", description="encoder: LayerNorm before each sublayer, or after (BERT)")
    embed_norm: bool = Field(False, description="encoder: LayerNorm over token + position embeddings (BERT)")
    norm_eps: float = Field(1e-5, gt=0, description="encoder: LayerNorm epsilon (BERT: 1e-12)")
    pool: Literal["cls", "mean"] = Field("cls", description="encoder cls head: read [CLS], or the mean of the tokens")

    @model_validator(mode="after")
    def _heads(self) -> TransformerConfig:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        bert = {k: getattr(self, k) for k in ENCODER_ONLY if getattr(self, k) != type(self).model_fields[k].default}
        if self.arch != "encoder" and bert:
            raise ValueError(f"{', '.join(bert)}: arch encoder only, not {self.arch}")
        return self

    def kwargs(self) -> dict[str, Any]:
        return self.model_dump(exclude={"name"} | (set() if self.arch == "encoder" else {"head", *ENCODER_ONLY}))

    @property
    def batch_norm(self) -> bool:
        return False


class RNNConfig(_Strict):
    """The recurrent network (models/rnn.py): cell, layers, head, and token embeddings for text."""

    name: Literal["rnn"] = "rnn"
    cell: Literal["rnn", "lstm", "gru"] = Field("lstm", description="plain tanh RNN, LSTM or GRU")
    hidden: int = Field(64, ge=1, description="hidden state size (per direction)")
    layers: int = Field(1, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1, description="between layers and before the head")
    bidirectional: bool = Field(False, description="also read right to left (classification; not with one_to_many)")
    head: Literal["many_to_one", "many_to_many", "one_to_many"] = Field(
        "many_to_one", description="one output per sequence | per step | a generated sequence from a seed"
    )
    pool: Literal["last", "mean", "max"] = Field("last", description="many_to_one: last real step, or masked mean/max")
    steps: int = Field(1, ge=1, description="one_to_many: steps generated from the seed")
    embedding_dim: int = Field(64, ge=1, description="text: token embedding size")
    embeddings: Literal["trainable", "word2vec", "word2vec_frozen"] = Field(
        "trainable", description="text: random init, or the prepare step's word2vec vectors (fine-tuned or frozen)"
    )
    last_value_residual: bool = Field(
        False, description="series: read the window relative to its last value and forecast the change from it"
    )
    gate_bias: float = Field(1.0, description="initial bias of the LSTM forget / GRU update gate (memory kept)")

    @model_validator(mode="after")
    def _shapes(self) -> RNNConfig:
        if self.bidirectional and self.head == "one_to_many":
            raise ValueError("one_to_many generates left to right; it cannot be bidirectional")
        return self

    def kwargs(self) -> dict[str, Any]:
        return self.model_dump(exclude={"name"})

    @property
    def batch_norm(self) -> bool:
        return False


def _model_name(value: Any) -> str:
    """The `name` that picks a model config; a block without one is the FFN (as before CNNs existed)."""
    return (value.get("name") if isinstance(value, dict) else getattr(value, "name", None)) or "ffn"


MODEL_TAGS = ("ffn", "cnn", "torchvision", "rnn", "transformer")
AnyModel = Annotated[
    Annotated[ModelConfig, Tag("ffn")]
    | Annotated[CNNConfig, Tag("cnn")]
    | Annotated[TorchvisionConfig, Tag("torchvision")]
    | Annotated[RNNConfig, Tag("rnn")]
    | Annotated[TransformerConfig, Tag("transformer")],
    Discriminator(_model_name),
]


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
        description="start from models:/<name>@<alias>, a checkpoint.pt path, torchvision:<arch>, or minilm "
        "(all-MiniLM-L6-v2's BERT weights: model as MINILM_MODEL, prepare text.tokenizer minilm)",
    )
    transfer: Literal["finetune", "feature_extractor"] = Field(
        "finetune", description="with init_from: train everything, or freeze the backbone and train the head"
    )
    backbone_lr_scale: float = Field(1.0, gt=0, le=1, description="finetune: backbone lr = lr x this")
    optimizer: Literal["gd", "momentum", "rmsprop", "adam", "adamw"] = "adam"
    lr: float = Field(1e-3, gt=0, description="learning rate")
    momentum: float = Field(0.9, ge=0, lt=1, description="for momentum and rmsprop")
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
    amp: Literal["none", "bf16", "fp16"] = Field("none", description="mixed precision: bf16 autocast, or fp16 + scaler")
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


class AugmentConfig(_Strict):
    """On-the-fly training augmentation (torchvision.transforms.v2) for image tasks; all off by default."""

    rotation: float = Field(0.0, ge=0, le=180, description="random rotation within +-degrees")
    translate: float = Field(0.0, ge=0, lt=1, description="random shift up to this fraction of width/height")
    scale: tuple[float, float] | None = Field(None, description="random zoom range, e.g. [0.9, 1.1]")
    crop_scale: tuple[float, float] | None = Field(None, description="random resized crop area range, e.g. [0.8, 1]")
    hflip: bool = Field(False, description="random horizontal flip (off for digits: a flipped 2 is no 2)")
    colour_jitter: float = Field(0.0, ge=0, lt=1, description="brightness/contrast/saturation jitter (RGB only)")
    noise_std: float = Field(0.0, ge=0, description="Gaussian noise std, in normalised units")
    erasing: float = Field(0.0, ge=0, le=1, description="probability of random erasing")
    group_size: int = Field(8, ge=1, description="images that share one draw of the random parameters")
    preview: int = Field(32, ge=0, description="augmented training images in the preview grid")
    seed: int = 0


class ExportConfig(_Strict):
    """ONNX export settings; parity above `tolerance` fails the export."""

    opset: int = Field(20, ge=17)
    tolerance: float = Field(1e-4, gt=0)


class RegisterConfig(_Strict):
    """Champion promotion rule for the registered model."""

    primary_metric: str
    greater_is_better: bool = True
    alias: str = "champion"
    min_score: float | None = Field(
        None, description="promotion gate: register only when the primary metric reaches this (None = always)"
    )


MULTI_OBJECTIVE_SAMPLERS = ("nsga2", "tpe", "random")


class ParamSpace(_Strict):
    """One searched field: float / int (low, high, log, step) or categorical (choices, any YAML values)."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None
    when: dict[str, list[Any]] | None = Field(None, description="sample only when earlier params take these values")

    @model_validator(mode="after")
    def _bounds(self) -> ParamSpace:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical needs a non-empty `choices` list")
            return self
        if self.low is None or self.high is None or self.low >= self.high:
            raise ValueError("needs `low` < `high`")
        if self.log and self.low <= 0:
            raise ValueError("log scale needs low > 0")
        if self.log and self.step:
            raise ValueError("log and step cannot be combined")
        return self


class TuneConfig(_Strict):
    """params.yaml `tune.<task>`; n_trials 0 (the default) skips tuning and the task trains as configured."""

    n_trials: int = Field(0, ge=0, description="trials in the study (over all workers); 0 = no tuning")
    sampler: Literal["tpe", "random", "grid", "cmaes", "gp", "nsga2"] = "tpe"
    pruner: Literal["median", "hyperband", "none"] = "median"
    workers: int = Field(1, ge=1, description="worker processes sharing the study")
    metric: str = Field("val_loss", description="validation metric each trial reports every epoch")
    direction: Literal["minimize", "maximize"] = "minimize"
    second_objective: Literal["none", "n_parameters"] = Field(
        "none", description="a second objective to minimise (multi-objective: a Pareto front)"
    )
    epochs: int | None = Field(None, ge=1, description="epoch budget per trial (default: train.epochs)")
    startup_trials: int = Field(10, ge=1, description="random trials before tpe / gp / cmaes model the space")
    prune_after_trials: int = Field(5, ge=0, description="median pruner: complete trials before any pruning")
    prune_warmup_epochs: int = Field(3, ge=0, description="median pruner: epochs every trial runs before pruning")
    seed: int = 42
    study_name: str | None = None
    storage: str | None = Field(None, description="default: $OPTUNA_STORAGE, else sqlite:///<home>/optuna.db")
    heartbeat_s: int = Field(30, ge=1, description="RDB storage: a trial silent this long x2 is marked FAIL")
    space: dict[str, ParamSpace] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> TuneConfig:
        if self.n_trials and not self.space:
            raise ValueError("n_trials > 0 needs a non-empty search `space`")
        for name, p in self.space.items():
            for other in p.when or {}:
                if other not in self.space or other == name:
                    raise ValueError(f"space.{name}.when refers to {other!r}, which is not another parameter")
        self.ordered_space()  # rejects circular conditions
        multi = self.second_objective != "none"
        if multi and self.sampler not in MULTI_OBJECTIVE_SAMPLERS:
            raise ValueError(f"a second objective needs sampler {' | '.join(MULTI_OBJECTIVE_SAMPLERS)}")
        if multi and self.pruner != "none":
            raise ValueError("Optuna prunes single-objective studies only; set pruner: none")
        if self.sampler == "nsga2" and not multi:
            raise ValueError("nsga2 is the multi-objective sampler; set second_objective or use tpe")
        if self.sampler == "grid":
            for name, p in self.space.items():
                if p.type != "categorical" and p.step is None:
                    raise ValueError(f"grid sampling needs space.{name} categorical or with a `step`")
        return self

    def ordered_space(self) -> list[tuple[str, ParamSpace]]:
        """Parameters by name, each after the ones its `when` tests: a canonical sampling order, because a
        mapping's order does not survive every runner (Kubeflow's parameters come back with sorted keys)."""
        placed: list[str] = []
        while len(placed) < len(self.space):
            ready = [n for n in sorted(self.space) if n not in placed and set(self.space[n].when or {}) <= set(placed)]
            if not ready:
                raise ValueError(f"circular `when` conditions among {sorted(set(self.space) - set(placed))}")
            placed.append(ready[0])
        return [(n, self.space[n]) for n in placed]

    def directions(self) -> list[str]:
        return [self.direction] + (["minimize"] if self.second_objective != "none" else [])


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


STAGE_MODELS: dict[str, type[_Strict]] = {
    "prepare": PrepareConfig,
    "augment": AugmentConfig,
    "train": TrainConfig,
    "tune": TuneConfig,
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


def kubeflow_config(params: dict[str, Any], task: str) -> KubeflowConfig:
    """The task's cluster settings: params.yaml `kubeflow.<task>` over the defaults."""
    return validate(KubeflowConfig, (params.get("kubeflow") or {}).get(task) or {}, f"kubeflow.{task}")


def run_overrides(overrides: list[str], stage: str, task: str) -> list[str]:
    """The `stage.task.key=value` items of a pipeline run's overrides that concern `stage.task`, as `key=value`."""
    prefix = f"{stage}.{task}."
    return [item[len(prefix) :] for item in overrides if item.startswith(prefix)]


def step_raw(raw: dict[str, Any], overrides: list[str], stage: str, task: str) -> dict[str, Any]:
    """A Kubeflow step's block: the pipeline parameter `raw` with the run's overrides for `stage.task` applied."""
    return apply_overrides(raw, run_overrides(overrides, stage, task))


def step_config(raw: dict[str, Any], overrides: list[str], stage: str, task: str) -> Any:
    """`step_raw`, validated into the stage's model (a bad override fails naming its params.yaml field)."""
    return validate(STAGE_MODELS[stage], step_raw(raw, overrides, stage, task), f"{stage}.{task}")


def tune_knobs(task: str, trials: int, workers: int) -> list[str]:
    """The pipeline parameters `tune_trials` / `tune_workers` as overrides of tune.<task>; -1 keeps params.yaml's."""
    knobs = {"n_trials": trials, "workers": workers}
    return [f"tune.{task}.{key}={value}" for key, value in knobs.items() if value >= 0]


def check_run_overrides(params: dict[str, Any], overrides: list[str]) -> None:
    """Reject a pipeline run's overrides before submitting: each is `stage.task.key=value` for a known stage and
    task, and the overridden block still validates."""
    for item in overrides:
        key, sep, _ = item.partition("=")
        parts = key.split(".")
        if not sep or len(parts) < 3 or parts[0] not in STAGE_MODELS or parts[1] not in tasks(params):
            raise ConfigError(
                f"override {item!r}: expected STAGE.TASK.KEY=VALUE with STAGE one of {', '.join(STAGE_MODELS)} "
                f"and TASK one of {', '.join(tasks(params))}"
            )
    for stage in STAGE_MODELS:
        for task in tasks(params):
            mine = run_overrides(overrides, stage, task)
            if mine:
                raw = apply_overrides(params.get(stage, {}).get(task) or {}, mine)
                validate(STAGE_MODELS[stage], raw, f"{stage}.{task}")


def validate(model: type[_Strict], raw: dict[str, Any], where: str) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{where}.{'.'.join(_field_path(e['loc']))}: {e['msg']}" if e["loc"] else f"{where}: {e['msg']}"
            for e in err.errors()
        )
        raise ConfigError(problems) from None


def _field_path(loc: tuple[Any, ...]) -> list[str]:
    """The params.yaml path of an error: pydantic's model-choice tag (model.cnn.kernel) is not a key."""
    return [str(p) for i, p in enumerate(loc) if not (i and loc[i - 1] == "model" and p in MODEL_TAGS)]


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
