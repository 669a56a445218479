"""ImageNet transfer on a small Fashion-MNIST slice: EfficientNet-Lite0 (models/efficientnet_lite.py) as a frozen
feature extractor, fine-tuned, and from scratch, at `--per-class` training images per class.

The images are upsampled to `--size` pixels and repeated over 3 channels; every variant sees the same images,
epochs (AdamW, one-cycle, batch 32, random horizontal flips) and seed; the frozen variant trains a linear head on
the backbone's pooled features, computed once. Test accuracy on the first `--test` test images.
Run: `python bench/transfer_imagenet.py --raw data/raw/fashion_mnist --size 64 --per-class 100 --epochs 8`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.data.images import read_idx  # noqa: E402
from models.efficientnet_lite import FEATURES, EfficientNetLite0, pretrained_lite0  # noqa: E402


def images(x: np.ndarray, size: int) -> torch.Tensor:
    t = torch.tensor(x, dtype=torch.float32)[:, None] / 255
    return F.interpolate(t, size=(size, size), mode="bilinear").expand(-1, 3, -1, -1).contiguous()


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 250]).argmax(1) for i in range(0, len(x), 250)])
    return float(pred.eq(y).float().mean())


def fit(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float, epochs: int) -> torch.nn.Module:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * -(-len(x) // 32))
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(x)).split(32):
            xb = x[batch].flip(3) if torch.rand(1) < 0.5 else x[batch]
            loss = F.cross_entropy(model(xb), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--raw", type=Path, required=True, help="folder with Fashion-MNIST's four idx .gz files")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--test", type=int, default=2000)
    args = p.parse_args()
    torch.manual_seed(0)
    x, y = read_idx(args.raw / "train-images-idx3-ubyte.gz"), read_idx(args.raw / "train-labels-idx1-ubyte.gz")
    rng = np.random.default_rng(0)
    pick = np.concatenate([rng.choice(np.flatnonzero(y == c), args.per_class, replace=False) for c in range(10)])
    xtr, ytr = images(x[pick], args.size), torch.tensor(y[pick]).long()
    xte = images(read_idx(args.raw / "t10k-images-idx3-ubyte.gz")[: args.test], args.size)
    yte = torch.tensor(read_idx(args.raw / "t10k-labels-idx1-ubyte.gz")[: args.test]).long()

    started = time.perf_counter()
    backbone = pretrained_lite0(10).eval()
    with torch.no_grad():
        ftr, fte = (torch.cat([backbone.features(a[i : i + 250]) for i in range(0, len(a), 250)]) for a in (xtr, xte))
    mean, std = ftr.mean(0), ftr.std(0) + 1e-6
    head = torch.nn.Linear(FEATURES, 10)
    opt = torch.optim.AdamW(head.parameters(), lr=0.01, weight_decay=0.01)
    for _ in range(300):  # full-batch: 1,000 feature vectors
        loss = F.cross_entropy(head((ftr - mean) / std), ytr)
        opt.zero_grad()
        loss.backward()
        opt.step()
    frozen = float(head((fte - mean) / std).argmax(1).eq(yte).float().mean())
    print(f"feature_extractor {frozen:.4f} {time.perf_counter() - started:.0f} s", flush=True)
    for name, model in (("finetune", pretrained_lite0(10)), ("scratch", EfficientNetLite0(10))):
        started = time.perf_counter()
        fit(model, xtr, ytr, 3e-3, args.epochs)
        print(f"{name} {accuracy(model, xte, yte):.4f} {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
