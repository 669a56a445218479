"""The tabular task from raw data to a registered model with the Python API (pipelines/api.py), as in a notebook.

    python examples/quickstart.py                 # in the repository: artifacts/, metrics/, mlflow.db here
    python examples/quickstart.py --root /tmp/x --epochs 3

Then `make mlflow-ui` shows the run and the registered model, and `make serve TASK=tabular` serves it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.api import evaluate, export, prepare, register, train


def main(root: Path, epochs: int) -> dict[str, float]:
    meta = prepare("tabular", root=root)
    print(f"prepared {meta.splits} rows of {len(meta.feature_names)} features")
    summary = train("tabular", root=root, epochs=epochs, lr=0.003, model__hidden=[32], progress=False)
    print(f"trained {summary['epochs_run']} epochs, best val score {summary['best_score']:.4f}")
    metrics = evaluate("tabular", root=root)
    print("test metrics:", {k: round(v, 4) for k, v in sorted(metrics.items())})
    print("ONNX parity:", export("tabular", root=root)["parity_max_abs_diff"])
    decision = register("tabular", root=root)
    print(f"registered version {decision.get('version')}, champion: {decision.get('champion_version')}")
    return metrics


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="where data/, artifacts/, metrics/ go")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    main(args.root, args.epochs)
