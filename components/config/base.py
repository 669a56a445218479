"""Typed step configuration read from params.yaml (keyed by stage, then task).

Config flows one way: params.yaml -> these models -> step function arguments -> MLflow params.
Every model forbids unknown keys, so a typo fails loudly with the field's full name."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
)

from components.core.errors import DlpipeError

IMAGENET_LITE0 = "imagenet:efficientnet_lite0"  # init_from: EfficientNet-Lite0's ImageNet weights (models/)
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


MODEL_TAGS = ("ffn", "cnn", "torchvision", "efficientnet_lite0", "rnn", "transformer")


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
