"""Mixed precision: what `train.amp` means on the machine a run trains on."""

from __future__ import annotations

import torch


def resolve_amp(amp: str, device: torch.device) -> str:
    """train.amp with `auto` decided for `device`: bf16 where it runs natively (about 2x on a CNN step on a CPU with
    AVX512-BF16; emulated bf16 on other CPUs is slower than fp32), else none."""
    if amp != "auto":
        return amp
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "none"
    caps = torch.cpu.get_capabilities() if device.type == "cpu" else {}
    return "bf16" if caps.get("avx512_bf16") or caps.get("amx_bf16") else "none"
