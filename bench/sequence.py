"""Sequence-model quality and latency figures, measured in one run on this machine.

1. Forecast (CO2, weekly): test-span MAPE of the recurrent model and its ratio to the seasonal-naive
   baseline (goal <= 0.5).
2. Sentiment (VADER movie-review snippets): test accuracy of the recurrent model and its training time on
   this machine (goal >= 75% within 10 minutes on 2 cores).
3. ONNX Runtime vs eager PyTorch, batch-1 latency of each exported model (median of many calls, same
   thread count for both).

Each task runs prepare -> train -> evaluate -> export with params.yaml's settings in a scratch folder
(its own MLflow store), so the figures do not depend on earlier runs. Results: bench/results/sequence.json.
Run: `python bench/sequence.py [--tasks forecast sentiment]`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_task(task: str, root: Path) -> dict:
    from components.config import TrainConfig, load_params, stage_config, validate
    from components.data.ingest import ingest
    from components.data.prepare import prepare
    from components.evaluate.step import evaluate
    from components.release.export import export
    from components.train.step import train

    params = load_params(ROOT / "params.yaml")
    prep = stage_config(params, "prepare", task)
    raw = ingest(prep.dataset, root / "data/raw").parent
    art = root / "artifacts" / task
    started = time.perf_counter()
    prepare(raw, art / "data", prep, task)
    prepared = time.perf_counter()
    summary = train(art / "data", art, validate(TrainConfig, params["train"][task], task), task, progress=False)
    trained = time.perf_counter()
    scores = evaluate(art / "data", art, root / "metrics" / f"{task}.json", root / "plots" / task)
    info = export(art / "data", art, art, stage_config(params, "export", task))
    return {
        "scores": scores,
        "prepare_s": prepared - started,
        "train_s": trained - prepared,
        "epochs_run": summary["epochs_run"],
        "best_epoch": summary["best_epoch"],
        "parity_max_abs_diff": info["parity_max_abs_diff"],
        "artifacts": str(art),
    }


def latency(art: Path, threads: int, calls: int = 300) -> dict:
    """Median batch-1 latency (ms) of ONNX Runtime and of eager PyTorch on one test row."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from components.data.splits import load_split
    from components.train.checkpoint import load_trained
    from components.train.objectives import OutputHead

    model, meta = load_trained(art)
    head = OutputHead(model, meta).eval()
    x, _ = load_split(art / "data", "test")
    row = x[:1]
    if meta.kind == "text":  # a text as served: padded only to its own length
        row = row[:, : int((row != 0).sum())]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(art / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    name = meta.input.name
    torch.set_num_threads(threads)
    tensor = torch.as_tensor(row)

    def timed(fn) -> float:
        for _ in range(20):
            fn()
        samples = []
        for _ in range(calls):
            t = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t)
        return float(np.median(samples) * 1000)

    with torch.inference_mode():
        torch_ms = timed(lambda: head(tensor))
    ort_ms = timed(lambda: session.run(None, {name: row}))
    return {"onnxruntime_ms": ort_ms, "pytorch_ms": torch_ms, "ort_over_torch": ort_ms / torch_ms, "threads": threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["forecast", "sentiment"])
    parser.add_argument("--threads", type=int, default=1, help="threads for the latency comparison")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dlpipe-bench-seq-") as tmp:
        root = Path(tmp)
        os.environ["DLPIPE_HOME"] = str(root)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
        results: dict = {"cpu_count": os.cpu_count()}
        for task in args.tasks:
            print(f"== {task}: prepare, train, evaluate, export ...", flush=True)
            out = run_task(task, root)
            out["latency_batch1"] = latency(Path(out.pop("artifacts")), args.threads)
            results[task] = out
    report(results)
    path = ROOT / "bench" / "results" / "sequence.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {path.relative_to(ROOT)}")


def report(results: dict) -> None:
    if "forecast" in results:
        f = results["forecast"]
        s = f["scores"]
        goal = "meets" if s["mape_ratio_to_naive"] <= 0.5 else "misses"
        print(
            f"forecast  MAPE {s['mape']:.3f}% vs seasonal-naive {s['naive_mape']:.3f}%: ratio "
            f"{s['mape_ratio_to_naive']:.3f} ({goal} the goal <= 0.5); MAE {s['mae']:.3f} vs {s['naive_mae']:.3f}; "
            f"trained in {f['train_s']:.0f} s ({f['epochs_run']} epochs)"
        )
        if "holt_winters_mape" in s:
            goal = "meets" if s["mape_ratio_to_holt_winters"] <= 0.9 else "misses"
            print(
                f"forecast  MAPE vs Holt-Winters {s['holt_winters_mape']:.3f}%: ratio "
                f"{s['mape_ratio_to_holt_winters']:.3f} ({goal} the goal <= 0.9)"
            )
    if "sentiment" in results:
        t = results["sentiment"]
        s = t["scores"]
        goal = "meets" if s["accuracy"] >= 0.75 and t["train_s"] <= 600 else "misses"
        print(
            f"sentiment accuracy {s['accuracy']:.4f}, F1 {s['f1']:.4f}, negation flip rate "
            f"{s['negation_flip_rate']:.2f}; trained in {t['train_s']:.0f} s ({t['epochs_run']} epochs) on "
            f"{results['cpu_count']} cores ({goal} the goal >= 75% within 10 min)"
        )
    for task in ("forecast", "sentiment"):
        if task in results:
            lat = results[task]["latency_batch1"]
            print(
                f"{task:9s} batch-1 latency: ONNX Runtime {lat['onnxruntime_ms']:.3f} ms, PyTorch "
                f"{lat['pytorch_ms']:.3f} ms, ratio {lat['ort_over_torch']:.2f} ({lat['threads']} thread)"
            )


if __name__ == "__main__":
    main()
