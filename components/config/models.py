"""params.yaml `train.<task>.model`: one config per architecture in models/, chosen by `name`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from components.config.base import _Strict


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
    pool_early: bool = Field(
        False, description="pool right after each block's first conv, before its norm and activation (airbench's order)"
    )
    batch_norm: bool = True
    residual: bool = Field(False, description="residual blocks: x + convs(x), 1x1 projection when shapes differ")
    activation: Literal["relu", "tanh", "sigmoid"] = "relu"
    dropout: float = Field(0.0, ge=0, lt=1, description="2-D dropout after each block")
    global_pool: Literal["avg", "max", "flatten"] = Field("avg", description="before the head; flatten keeps space")
    head: list[int] = Field(default_factory=list, description="hidden sizes of the classifier head")
    head_dropout: float = Field(0.0, ge=0, lt=1)
    tta_hflip: bool = Field(
        False, description="eval and serving: average the logits of each image and its mirror (test-time augmentation)"
    )

    @model_validator(mode="after")
    def _shapes(self) -> CNNConfig:
        if self.padding == "same" and self.kernel % 2 == 0:
            raise ValueError("padding 'same' needs an odd kernel")
        if self.residual and self.padding != "same":
            raise ValueError("residual blocks need padding 'same' (the skip must match the block's output)")
        if self.residual and self.pool_early:
            raise ValueError("pool_early does not combine with residual blocks (the skip would skip the pooling)")
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


class EfficientNetLiteConfig(_Strict):
    """EfficientNet-Lite0 on a task's images (models/efficientnet_lite.py `LiteClassifier`); ImageNet weights
    from `init_from: imagenet:efficientnet_lite0`."""

    name: Literal["efficientnet_lite0"] = "efficientnet_lite0"
    size: int = Field(64, ge=32, description="images are upsampled to size x size inside the model")
    mean: float = Field(0.5, description="the task's pixel normalisation (meta.json preprocessing), undone inside")
    std: float = Field(0.5, gt=0)
    dropout: float = Field(0.2, ge=0, lt=1, description="before the head")

    def kwargs(self) -> dict[str, Any]:
        return self.model_dump(exclude={"name"})

    @property
    def batch_norm(self) -> bool:
        return True


def _model_name(value: Any) -> str:
    """The `name` that picks a model config; a block without one is the FFN (the default architecture)."""
    return (value.get("name") if isinstance(value, dict) else getattr(value, "name", None)) or "ffn"


AnyModel = Annotated[
    Annotated[ModelConfig, Tag("ffn")]
    | Annotated[CNNConfig, Tag("cnn")]
    | Annotated[TorchvisionConfig, Tag("torchvision")]
    | Annotated[EfficientNetLiteConfig, Tag("efficientnet_lite0")]
    | Annotated[RNNConfig, Tag("rnn")]
    | Annotated[TransformerConfig, Tag("transformer")],
    Discriminator(_model_name),
]
