"""Benchmark: the generic trainer's epoch throughput vs a minimal hand-written PyTorch loop.

Same model (the tabular task's FFN), same data (breast-cancer train/val split), same batch size and
optimizer, one process. Each side runs REPEATS times, interleaved, so drift hits both; the ratio of
the medians is printed (goal >= 0.97). The trainer runs as `dlpipe train` does, checkpoint included.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from components.config import PrepareConfig, TrainConfig
from components.ingest import ingest
from components.prepare import load_split, prepare
from components.trainer import fit, make_optimizer, seed_everything
from models import build_model

EPOCHS, REPEATS = 60, 7


def data(root: Path) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    ingest("breast_cancer", root / "raw")
    prepare(root / "raw", root / "prep", PrepareConfig(dataset="breast_cancer", objective="binary"), "bench")
    out = []
    for split in ("train", "val"):
        x, y = load_split(root / "prep", split)
        out.append((torch.as_tensor(x), torch.as_tensor(y, dtype=torch.float32).reshape(-1, 1)))
    return out[0], out[1]


def model(cfg: TrainConfig) -> torch.nn.Module:
    seed_everything(cfg.seed)
    return build_model("ffn", in_features=30, out_features=1, **cfg.model.kwargs())


def hand_loop(cfg: TrainConfig, train, val) -> float:
    """What one would write by hand: shuffle, mini-batches, step, validate each epoch."""
    net = model(cfg)
    opt = make_optimizer(net.parameters(), cfg)
    x, y = train
    gen = torch.Generator().manual_seed(cfg.seed)
    start = time.perf_counter()
    for _ in range(EPOCHS):
        net.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            loss = F.binary_cross_entropy_with_logits(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            F.binary_cross_entropy_with_logits(net(val[0]), val[1]).item()
    return EPOCHS / (time.perf_counter() - start)


def trainer(cfg: TrainConfig, train, val, ckpt: Path) -> float:
    net = model(cfg)
    start = time.perf_counter()
    fit(net, F.binary_cross_entropy_with_logits, train, val, cfg, checkpoint=ckpt, progress=False)
    return EPOCHS / (time.perf_counter() - start)


def main() -> None:
    torch.set_num_threads(1)  # the loops are tiny; threads only add noise
    cfg = TrainConfig.model_validate(
        {
            "model": {"hidden": [64, 32], "activation": "relu", "dropout": 0.1, "batch_norm": True},
            "batch_size": 32,
            "epochs": EPOCHS,
            "early_stopping": {"enabled": False},
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        train, val = data(Path(tmp))
        hand, ours = [], []
        for _ in range(REPEATS):
            hand.append(hand_loop(cfg, train, val))
            ours.append(trainer(cfg, train, val, Path(tmp) / "ckpt.pt"))
    h, o = statistics.median(hand), statistics.median(ours)
    print(f"hand-written loop : {h:8.1f} epochs/s  (runs: {', '.join(f'{v:.0f}' for v in hand)})")
    print(f"dlpipe trainer    : {o:8.1f} epochs/s  (runs: {', '.join(f'{v:.0f}' for v in ours)})")
    print(f"ratio trainer/hand: {o / h:.3f}  (goal >= 0.97)")
    sys.exit(0)


if __name__ == "__main__":
    main()
