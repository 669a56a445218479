"""The architectures, behind one registry: `build_model(name, out_features, <input size>, **kwargs)`.

Flat inputs give `in_features`; images give `in_channels` and `image_size`; value sequences [batch, time, F]
give `in_features` = F; token ids give `vocab_size` and `pad_id` (and `max_len`, for models with a position
table), or whatever meta.json's `model_inputs` says (see `input_kwargs`).
Imports: torch and torchvision only, nothing of components/ (tests/unit/test_architecture.py checks it).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from models.cnn import CNN
from models.efficientnet_lite import LiteClassifier
from models.ffn import FFN
from models.pretrained import TorchvisionNet
from models.rnn import RNN
from models.transformer import Transformer

REGISTRY: dict[str, Any] = {
    "ffn": FFN,
    "cnn": CNN,
    "torchvision": TorchvisionNet,
    "efficientnet_lite0": LiteClassifier,
    "rnn": RNN,
    "transformer": Transformer,
}
POSITIONAL = {"transformer"}  # models with a position table: token ids also give `max_len`


def build_model(name: str, **kwargs: Any) -> nn.Module:
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](**kwargs)


def input_kwargs(meta: Any, model: str) -> dict[str, Any]:
    """Constructor arguments of registry model `model` for a task contract (components/core/contract.py's
    TaskMeta, read by attribute: models/ imports nothing from components): the sizes in `model_inputs` (token
    tasks); token ids [None, None] with a `tokenizer` block (text tasks); or the input shape [None, F],
    [None, C, H, W], value sequence [None, None, F]."""
    if meta.model_inputs:
        return meta.model_inputs
    tok = meta.tokenizer
    if isinstance(tok, dict):
        sizes = {"vocab_size": tok["vocab_size"], "pad_id": tok["pad_id"]}
        return sizes | ({"max_len": tok["max_length"]} if model in POSITIONAL else {})
    dims = meta.input.shape[1:]
    if len(dims) == 2 and dims[0] is None:  # [time, F]
        return {"in_features": dims[1]}
    if len(dims) == 1:
        return {"in_features": dims[0]}
    return {"in_channels": dims[0], "image_size": (dims[1], dims[2])}


def summarize(model: nn.Module, shape: list[int | None], dtype: str = "float32") -> str:
    """Layer table (name, type, output shape, parameters) from one forward pass of a batch of 2 (a free
    sequence length becomes 8; token ids are all 1, not padding)."""
    rows: list[tuple[str, str, str, int]] = []
    hooks = [
        module.register_forward_hook(
            lambda mod, _, out, name=name: rows.append(
                (name, type(mod).__name__, _shape(out), sum(p.numel() for p in mod.parameters()))
            )
        )
        for name, module in model.named_modules()
        if name and not list(module.children())
    ]
    was_training = model.training
    try:
        with torch.no_grad():
            dims = [d or 8 for d in shape[1:]]
            example = torch.ones(2, *dims, dtype=torch.long) if dtype == "int64" else torch.zeros(2, *dims)
            model.eval()(example)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    width = max(len(r[0]) for r in rows)
    lines = [f"{'layer':{width}s}  {'type':18s} {'output shape':20s} {'params':>10s}"]
    lines += [f"{n:{width}s}  {t:18s} {s:20s} {p:>10,d}" for n, t, s, p in rows]
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lines.append(f"total parameters {total:,d} (trainable {trainable:,d})")
    return "\n".join(lines) + "\n"


def _shape(out: Any) -> str:
    """Output shape of a layer; recurrent layers return (output, state): show the output."""
    while isinstance(out, tuple):
        out = out[0]
    return str(list(out.shape))
