"""The architectures, behind one registry: `build_model(name, in_features, out_features, **kwargs)`."""

from __future__ import annotations

from typing import Any

from torch import nn

from models.ffn import FFN

REGISTRY: dict[str, type[nn.Module]] = {"ffn": FFN}


def build_model(name: str, **kwargs: Any) -> nn.Module:
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](**kwargs)
