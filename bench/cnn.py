"""Benchmark: the CNN tasks' test accuracy and wall time with params.yaml's defaults, and ONNX Runtime vs
PyTorch batch-1 latency.

Each task runs the same step functions `dvc repro` runs (ingest -> prepare -> augment -> train -> evaluate
-> export) in a fresh folder; wall time covers all of them. Latency: the exported model in an ONNX Runtime
session as serving opens it vs the same trained model in eager PyTorch, both on one thread, single images
from the test split, interleaved, medians of REPEATS calls (goal: ratio <= 0.5). Goals from the issue:
digits >= 0.990, mnist >= 0.985, fashion >= 0.93, each within 15 minutes on 2 CPU cores.

    python bench/cnn.py fashion --seeds 3                  # params.yaml's recipe, three seeds
    python bench/cnn.py fashion --no-export -s train.fashion.batch_size=512 -s augment.fashion.group_size=128
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from pipelines import machine

ROOT = Path(__file__).resolve().parents[1]
GOALS = {"digits": 0.990, "mnist": 0.985, "fashion": 0.93}
REPEATS = 300


def run_task(
    task: str, root: Path, seed: int | None = None, overrides: list[str] | None = None, export_model: bool = True
) -> dict[str, float]:
    from components.config import load_params
    from components.config.resolve import check_run_overrides, step_config
    from components.data.augment import augment
    from components.data.ingest import ingest
    from components.data.prepare import prepare
    from components.evaluate.step import evaluate
    from components.release.export import export
    from components.train.step import train

    params = load_params(ROOT / "params.yaml")
    overrides = [*(overrides or []), *([f"train.{task}.seed={seed}"] if seed is not None else [])]
    check_run_overrides(params, overrides)  # STAGE.TASK.KEY=VALUE, as `dlpipe pipeline run -s` takes them

    def config(stage: str) -> Any:  # params.yaml's block with the overrides, as a Kubeflow step resolves it
        return step_config(params.get(stage, {}).get(task) or {}, overrides, stage, task)

    started = time.perf_counter()
    prep = config("prepare")
    ingest(prep.dataset, root / "raw")
    art = root / task
    prepare(root / "raw", art / "data", prep, task)
    augment(art / "data", art / "augment", config("augment"), task)
    trained = time.perf_counter()
    train(art / "data", art, config("train"), task, progress=False, augment_dir=art / "augment")
    train_s = time.perf_counter() - trained
    scores = evaluate(art / "data", art, root / "metrics" / f"{task}.json", root / "plots" / task)
    if export_model:
        export(art / "data", art, art, config("export"))
    wall_s = time.perf_counter() - started
    return {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"], "wall_s": wall_s, "train_s": train_s}


def latency(art: Path) -> dict[str, float]:
    import torch

    from components.data.splits import load_split
    from components.train.checkpoint import load_trained
    from components.train.objectives import OutputHead
    from serving.bundle import load_bundle
    from serving.session import make_session

    torch.set_num_threads(1)
    model, meta = load_trained(art)
    head = OutputHead(model, meta).eval()
    session = make_session(load_bundle(meta.task, model_dir=art), threads=1)
    x, _ = load_split(art / "data", "test")
    feeds = [x[i : i + 1] for i in range(REPEATS)]
    torch_s, ort_s = [], []
    with torch.inference_mode():
        for sample in feeds[:20]:  # warm-up
            head(torch.as_tensor(sample))
            session.run(None, {"image": sample})
        for sample in feeds:
            t = time.perf_counter()
            head(torch.as_tensor(sample))
            torch_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            session.run(None, {"image": sample})
            ort_s.append(time.perf_counter() - t)
    p, o = statistics.median(torch_s) * 1e3, statistics.median(ort_s) * 1e3
    return {"torch_ms": p, "onnxruntime_ms": o, "ratio": o / p}


def run_all(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Every task's seeds in `root` (its own MLflow store and DLPIPE_HOME), one line printed per task."""
    os.environ.setdefault("DLPIPE_HOME", str(root))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    results = {}
    before = machine.speed()  # a shared machine trains the same recipe up to 1.7x as long in a slow hour
    for task in args.tasks:
        seeds = [args.first_seed + i for i in range(args.seeds)]
        runs = [run_task(task, root / f"seed{seed}", seed, args.set, not args.no_export) for seed in seeds]
        result = runs[0] | ({} if args.no_export else latency(root / f"seed{seeds[0]}" / task))
        accs = [r["accuracy"] for r in runs]
        result |= {"seeds": dict(zip(seeds, runs, strict=True)), "accuracy_min": min(accs), "accuracy_max": max(accs)}
        result |= {"device": machine.device_name(), "overrides": args.set}
        results[task] = result
        goal = GOALS.get(task, 0.0)
        verdict = "met" if min(accs) >= goal else "MISSED"
        spread = f" seeds {' '.join(f'{a:.4f}' for a in accs)}" if args.seeds > 1 else ""
        train_s = " / ".join(f"{r['train_s']:.0f}" for r in runs)
        line = f"{task:8s} accuracy {result['accuracy']:.4f}{spread} (goal {goal:.3f} {verdict})  train {train_s} s"
        line += f"  wall {result['wall_s'] / 60:5.1f} min"
        if not args.no_export:
            line += f"  batch-1 latency onnxruntime {result['onnxruntime_ms']:.3f} ms"
            line += f" / torch {result['torch_ms']:.3f} ms = {result['ratio']:.2f} (goal <= 0.5)"
        print(line + (f"  with {' '.join(args.set)}" if args.set else ""), flush=True)
    speeds = [before, machine.speed()]
    print(f"machine, before and after: {machine.describe(*speeds)}", flush=True)
    return {task: result | {"machine": speeds} for task, result in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="*", default=list(GOALS))
    parser.add_argument("--seeds", type=int, default=1, help="train each task this many times (seeds 42, 43, ...)")
    parser.add_argument("--first-seed", type=int, default=42, help="the first of those seeds")
    parser.add_argument(
        "--keep", type=Path, help="folder for the runs' outputs, kept (default: a temporary one, removed at the end)"
    )
    parser.add_argument(
        "--set",
        "-s",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a params field as `dlpipe pipeline run -s` does: STAGE.TASK.KEY=VALUE (train.fashion.lr=0.01)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cnn.json", help="results JSON")
    parser.add_argument(
        "--no-export", action="store_true", help="train and evaluate only: no ONNX export, no latency comparison"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dlpipe-bench-cnn-") as tmp:  # removed after; a --keep folder stays
        results = run_all(args, args.keep or Path(tmp))
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
