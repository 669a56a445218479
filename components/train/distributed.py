"""DistributedDataParallel plumbing for `torchrun --nproc-per-node N dlpipe train ...`.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; without them everything here is a single-process no-op.
Backend: NCCL on GPU, gloo on CPU. Only rank 0 logs, saves and registers.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def init(device_type: str) -> torch.device | None:
    """Join the process group when launched by torchrun; return this rank's device (None if single process)."""
    if world_size() <= 1:
        return None
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    if device_type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def all_sum(value: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (identity when single-process)."""
    if active():
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def from_main(obj: Any) -> Any:
    """Rank 0's value on every rank, so decisions (early stopping) never diverge between ranks."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup() -> None:
    if active():
        dist.destroy_process_group()
