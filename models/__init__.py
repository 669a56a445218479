"""The architectures, behind one registry: `build_model(name, out_features, <input size>, **kwargs)`.

Flat inputs give `in_features`; images give `in_channels` and `image_size` (see `input_kwargs`); token
sequences give what meta.json's `model_inputs` says (vocab_size, max_len, pad_id).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from models.cnn import CNN
from models.ffn import FFN
from models.pretrained import TorchvisionNet
from models.transformer import Transformer

REGISTRY: dict[str, Any] = {"ffn": FFN, "cnn": CNN, "torchvision": TorchvisionNet, "transformer": Transformer}


def build_model(name: str, **kwargs: Any) -> nn.Module:
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](**kwargs)


def input_kwargs(shape: list[int | None]) -> dict[str, Any]:
    """Constructor arguments for an input of meta.json's shape [None, F] or [None, C, H, W]."""
    dims = shape[1:]
    if len(dims) == 1:
        return {"in_features": dims[0]}
    return {"in_channels": dims[0], "image_size": (dims[1], dims[2])}


def summarize(model: nn.Module, shape: list[int | None], dtype: str = "float32") -> str:
    """Layer table (name, type, output shape, parameters) from one forward pass of a batch of 2
    (token ids: zeros, 8 per unknown length)."""
    rows: list[tuple[str, str, str, int]] = []
    hooks = [
        module.register_forward_hook(
            lambda mod, _, out, name=name: rows.append(
                (name, type(mod).__name__, str(list(out.shape)), sum(p.numel() for p in mod.parameters()))
            )
        )
        for name, module in model.named_modules()
        if name and not list(module.children())
    ]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(2, *(d or 8 for d in shape[1:]), dtype=getattr(torch, dtype)))
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
