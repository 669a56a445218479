"""Benchmark: the generic trainer's epoch throughput vs a minimal hand-written PyTorch loop.

Same model (the tabular task's FFN), same data (breast-cancer train/val split), same batch size and
optimizer, one process. Each side runs REPEATS times, interleaved, so drift hits both; the ratio of
the medians is printed (goal >= 0.97). The trainer runs as `dlpipe train` does (early stopping off,
checkpoint at the end); "same work" turns off the per-layer gradient-norm diagnostics, which the
hand-written loop does not compute; the last line shows what those diagnostics cost.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from components.config import PrepareConfig, TrainConfig
from components.data.ingest import ingest
from components.data.prepare import prepare
from components.data.splits import load_split
from components.train.loop import fit, seed_everything
from components.train.optim import make_optimizer
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
    """What one would write by hand: shuffle, mini-batches, step; per epoch the train and val loss."""
    net = model(cfg)
    opt = make_optimizer(net.parameters(), cfg)
    x, y = train
    gen = torch.Generator().manual_seed(cfg.seed)
    start = time.perf_counter()
    for _ in range(EPOCHS):
        net.train()
        order = torch.randperm(len(x), generator=gen)
        total = torch.zeros(())
        for i in range(0, len(x), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            loss = F.binary_cross_entropy_with_logits(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
        float(total) / len(x)
        net.eval()
        with torch.no_grad():
            float(F.binary_cross_entropy_with_logits(net(val[0]), val[1]))
    return EPOCHS / (time.perf_counter() - start)


def trainer(cfg: TrainConfig, train, val, ckpt: Path) -> float:
    net = model(cfg)
    start = time.perf_counter()
    fit(net, F.binary_cross_entropy_with_logits, train, val, cfg, checkpoint=ckpt, progress=False)
    return EPOCHS / (time.perf_counter() - start)


def main() -> None:
    torch.set_num_threads(1)  # the loops are tiny; threads only add noise
    base = {
        "model": {"hidden": [64, 32], "activation": "relu", "dropout": 0.1, "norm": "batch"},
        "batch_size": 32,
        "epochs": EPOCHS,
        "early_stopping": {"enabled": False},
    }
    same_work = TrainConfig.model_validate({**base, "gradients": {"track": False}})
    default = TrainConfig.model_validate(base)
    runs: dict[str, list[float]] = {"hand": [], "same": [], "default": []}
    with tempfile.TemporaryDirectory() as tmp:
        train, val = data(Path(tmp))
        for _ in range(REPEATS):
            runs["hand"].append(hand_loop(same_work, train, val))
            runs["same"].append(trainer(same_work, train, val, Path(tmp) / "ckpt.pt"))
            runs["default"].append(trainer(default, train, val, Path(tmp) / "ckpt.pt"))
    med = {k: statistics.median(v) for k, v in runs.items()}
    label = {
        "hand": "hand-written loop",
        "same": "dlpipe trainer, same work",
        "default": "dlpipe trainer + grad-norm diagnostics",
    }
    for key, values in runs.items():
        print(f"{label[key]:40s}: {med[key]:7.1f} epochs/s  (runs: {', '.join(f'{v:.0f}' for v in values)})")
    print(f"ratio trainer / hand (same work)        : {med['same'] / med['hand']:.3f}  (goal >= 0.97)")
    print(f"ratio trainer with diagnostics / hand   : {med['default'] / med['hand']:.3f}")


if __name__ == "__main__":
    main()
