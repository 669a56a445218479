"""Benchmark: TPE + median pruning vs random search without pruning, at the same number of trials.

For each task (tabular, and the digits CNN) both studies run on the same prepared data and search
space (params.yaml `tune.<task>.space`), one after the other in this process. Printed: the best
validation metric and the total epochs trained by each, and their ratios. Goal: same-or-better best
metric with <= 50% of the epochs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from components.config import load_params, stage_config
from components.data.augment import augment
from components.data.ingest import ingest
from components.data.prepare import prepare
from components.tune.step import tune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["tabular", "digits"])
    parser.add_argument("--trials", type=int, default=24)
    args = parser.parse_args()
    params = load_params()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["DLPIPE_HOME"] = str(root)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
        print(f"{'task':8s} {'study':22s} {'best':>8s} {'epochs':>7s} {'seconds':>8s}")
        for task in args.tasks:
            prep = stage_config(params, "prepare", task)
            art = root / task
            prepare(ingest(prep.dataset, root / "raw").parent, art / "data", prep, task)
            augment(art / "data", art / "augment", stage_config(params, "augment", task), task)
            base = stage_config(params, "tune", task)
            results = {}
            for label, sampler, pruner in (("tpe+median", "tpe", "median"), ("random, no pruning", "random", "none")):
                cfg = base.model_copy(update={"n_trials": args.trials, "sampler": sampler, "pruner": pruner})
                cfg = cfg.model_copy(update={"study_name": f"bench-{task}-{sampler}", "workers": 1})
                started = time.perf_counter()
                s = tune(art / "data", art / label, art / "plots", task, cfg, params["train"][task], art / "augment")
                results[label] = (s["best_value"], s["epochs_trained"], time.perf_counter() - started)
                best, epochs, secs = results[label]
                print(f"{task:8s} {label:22s} {best:8.4f} {epochs:7d} {secs:8.1f}", flush=True)
            (b1, e1, _), (b2, e2, _) = results.values()
            better = b1 <= b2 if base.direction == "minimize" else b1 >= b2
            print(
                f"{task:8s} ratio tpe/random: best {b1 / b2:.3f} ({'same or better' if better else 'worse'}), "
                f"epochs {e1 / e2:.2f} (goal <= 0.50)",
                flush=True,
            )


if __name__ == "__main__":
    main()
