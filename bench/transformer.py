"""Decoder quality anchor: character-level tiny Shakespeare, nanoGPT's 90/10 split, 2 CPU threads.

nanoGPT's CPU configuration reaches val loss 1.88 in about 3 minutes on a laptop; the goal here is <= 1.50
within 10 minutes. This runs the project's own prepare -> train -> evaluate steps with a longer budget than
params.yaml's `make run` default and prints the held-out loss (every window of the last 10%) and the time.

    python bench/transformer.py [--steps 3200] [--threads 2] [--seed 42]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from components.config import LMConfig, PrepareConfig, TrainConfig, validate
from components.data.ingest import ingest
from components.data.prepare import prepare
from components.evaluate.step import evaluate
from components.train.step import train

GOAL, ANCHOR = 1.50, 1.88
TRAIN = {
    "model": {"name": "transformer", "arch": "decoder", "d_model": 192, "n_layers": 4, "n_heads": 6, "dropout": 0.0},
    "optimizer": "adamw",
    "lr": 0.005,  # 3,200 steps: 1.492 in 575 s (by-hand attention); SDPA's kernels, 2,400 steps: 1.507 in 551 s
    "amp": "auto",  # bf16 where native (models/transformer/layers.py then computes attention by hand: 0.16 s a step)
    "l2": 0.1,
    "batch_size": 32,
    "scheduler": {"name": "cosine", "warmup_epochs": 1, "min_lr": 0.0001},
    "gradients": {"clip_norm": 1.0, "track": False},
    "early_stopping": {"enabled": False},
    "checkpoint_interval_s": 120,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3200, help="optimizer steps in all")
    parser.add_argument("--epochs", type=int, default=8, help="validation checks (steps are spread over them)")
    parser.add_argument("--block", type=int, default=96, help="context length")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42, help="initial weights and batch order")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="bench-transformer-"))
    os.environ.setdefault("DLPIPE_HOME", str(root))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    art = root / "artifacts/decoder"
    prep = PrepareConfig(
        dataset="tinyshakespeare",
        objective="causal_lm",
        val_size=0.1,
        lm=LMConfig(block_size=args.block, stride=args.block // 2),
    )
    prepare(ingest("tinyshakespeare", root / "data/raw").parent, art / "data", prep, "decoder")
    budget = {"epochs": args.epochs, "steps_per_epoch": args.steps // args.epochs, "seed": args.seed}
    cfg = validate(TrainConfig, {**TRAIN, **budget}, "bench")
    started = time.perf_counter()
    train(art / "data", art, cfg, "decoder", progress=False)
    seconds = time.perf_counter() - started
    scores = evaluate(art / "data", art, root / "metrics/decoder.json", root / "plots/decoder")
    sample = (root / "plots/decoder/sample.txt").read_text()[:300]
    result = {"val_loss": scores["loss"], "perplexity": scores["perplexity"], "train_seconds": round(seconds, 1)}
    result |= {"threads": args.threads, "seed": args.seed, "steps": args.steps, "tokens": args.steps * 32 * args.block}
    print(json.dumps(result))
    print(
        f"held-out loss {scores['loss']:.3f} in {seconds / 60:.1f} min (goal <= {GOAL} in 10 min; nanoGPT CPU {ANCHOR})"
    )
    print(f"sample:\n{sample}\nplots: {root / 'plots/decoder'}")


if __name__ == "__main__":
    main()
