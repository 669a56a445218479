"""Training mini-batches for the loop (components/train/loop.py), and chunks for scoring a split (`predict`).

Small datasets live on the device as tensors and are batched by index (no DataLoader overhead); large
ones stream through a DataLoader with pinned memory and workers.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from components.config import TrainConfig
from components.train import distributed


class Batches:
    """Yields (x, y) mini-batches on the device, in an order that is exact on resume and sharded under DDP."""

    def __init__(self, x: Tensor, y: Tensor, batch: int, device: torch.device, cfg: TrainConfig) -> None:
        self.n, self.batch, self.device = len(x), batch, device
        self.on_device = (x.nbytes + y.nbytes) / 2**20 <= cfg.device_data_max_mb
        self.x, self.y = (x.to(device), y.to(device)) if self.on_device else (x, y)
        self.sampler = None
        if distributed.active():
            self.sampler = DistributedSampler(
                range(self.n), distributed.world_size(), distributed.rank(), shuffle=True, seed=cfg.seed
            )
        self.workers, self.pin = cfg.num_workers, device.type == "cuda"
        self.cap = cfg.steps_per_epoch

    def steps(self) -> int:
        per_rank = len(self.sampler) if self.sampler is not None else self.n
        return len(self._starts(per_rank))

    def _starts(self, n: int) -> range:
        """Batch start offsets; a trailing batch of one row is dropped (batch norm cannot train on it).
        `steps_per_epoch` keeps the first batches of each epoch's fresh shuffle (a large corpus)."""
        end = n - 1 if self.batch > 1 and n % self.batch == 1 else n
        return range(0, end, self.batch)[: self.cap]

    def epoch(self, epoch: int, gen: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
            order = torch.tensor(list(self.sampler))
        else:
            order = torch.randperm(self.n, generator=gen)
        if self.on_device:
            order = order.to(self.device)
            for start in self._starts(len(order)):
                idx = order[start : start + self.batch]
                yield self.x[idx], self.y[idx]
            return
        chunks = [order[i : i + self.batch].tolist() for i in self._starts(len(order))]
        loader = DataLoader(
            TensorDataset(self.x, self.y), batch_sampler=chunks, num_workers=self.workers, pin_memory=self.pin
        )
        for xb, yb in loader:
            yield xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)


TOKEN_CHUNK = 64  # rows a chunk when they go in order of length
# Rows a chunk otherwise. On a CPU a chunk's activation maps should stay in cache: Fashion-MNIST's 5,000 validation
# images (with the flipped copies) take 1.05 s in chunks of 128 on 2 AVX2 cores, 1.46 s in 256 and 2.2 s in 1024.
CPU_CHUNK, GPU_CHUNK = 128, 1024


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, chunk: int | None = None, pad_id: int | None = None) -> Tensor:
    """model(x) in chunks (default: `CPU_CHUNK` rows on a CPU, `GPU_CHUNK` on a GPU), so a whole split of images
    never holds every activation map at once. With `pad_id`
    (token ids padded on the right) the rows go in order of length, `TOKEN_CHUNK` at a time, so a model that
    cuts a batch to its longest text (models/padding.py) spends about each text's own length; the outputs come
    back in x's order."""
    if pad_id is not None and x.dim() == 2 and not x.is_floating_point():
        order = (x != pad_id).sum(1).argsort()
        return predict(model, x[order], TOKEN_CHUNK)[order.argsort()]
    chunk = chunk or (CPU_CHUNK if x.device.type == "cpu" else GPU_CHUNK)
    return torch.cat([model(part) for part in x.split(chunk)]) if len(x) > chunk else model(x)
