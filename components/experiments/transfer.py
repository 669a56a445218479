"""The transfer-learning lesson as an experiment (DVC stage `transfer_fashion`, `dvc exp run`-able).

A CNN pretrained on MNIST digits starts a small Fashion-MNIST slice (e.g. 1,000 training images): fine-tuned
(every weight trains, the backbone at a lower learning rate) and as a frozen feature extractor (only the
head trains), against the same network from scratch, all with the same epochs, data and seed. Every run
is a normal train step (its own MLflow run); the test accuracies go to metrics/transfer_fashion.json. The
validation split only draws the curves (fixed epochs, the last epoch's weights), so `val_limit` of its images
are kept (components/experiments/splits.py); train and test are the prepared ones.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import Field

from components.config import PrepareConfig, TrainConfig, _Strict
from components.core.errors import TransferError
from components.core.io import read_checkpoint, write_json
from components.data.prepare import prepare
from components.evaluate.step import evaluate
from components.experiments.splits import keep_val
from components.train.step import train


class TransferStudyConfig(_Strict):
    """params.yaml `experiments.transfer_fashion`."""

    source: str = Field("artifacts/mnist/checkpoint.pt", description="pretrained checkpoint or models:/name@alias")
    dataset: str = "fashion_mnist"
    train_limit: int = Field(1000, ge=10, description="training images of the target task")
    val_size: float = 0.0714286
    test_size: float = 0.142857
    val_limit: int | None = Field(
        500, ge=10, description="validation images kept (the curves only: fixed epochs, the last epoch's weights)"
    )
    train: dict[str, Any] = Field(default_factory=dict, description="train settings shared by every variant")
    variants: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {
            "scratch": {},
            "finetune": {"transfer": "finetune", "backbone_lr_scale": 0.1},
            "feature_extractor": {"transfer": "feature_extractor"},
        }
    )
    seed: int = 42


def transfer_study(raw_dir: Path, work_dir: Path, metrics_path: Path, cfg: TransferStudyConfig) -> dict[str, Any]:
    """Prepare the slice once, train every variant into work_dir/<variant>, return the test scores."""
    work_dir = Path(work_dir)
    prep = PrepareConfig(
        dataset=cfg.dataset,
        objective="multiclass",
        train_limit=cfg.train_limit,
        seed=cfg.seed,
        val_size=cfg.val_size,
        test_size=cfg.test_size,
    )
    prepare(raw_dir, work_dir / "data", prep, "transfer_fashion")
    keep_val(work_dir / "data", cfg.val_limit)
    model = _source_model_config(cfg.source)
    results: dict[str, Any] = {}
    for name, variant in cfg.variants.items():
        init = {"init_from": cfg.source} if variant.get("transfer") else {}
        train_cfg = TrainConfig.model_validate({**cfg.train, "model": model, "seed": cfg.seed, **init, **variant})
        started = time.perf_counter()
        out = work_dir / name
        train(work_dir / "data", out, train_cfg, f"transfer_fashion_{name}", progress=False)
        scores = evaluate(work_dir / "data", out, out / "metrics.json", out / "plots")
        results[name] = {
            "accuracy": scores["accuracy"],
            "macro_f1": scores["macro_f1"],
            "train_seconds": round(time.perf_counter() - started, 1),
        }
    write_json(Path(metrics_path), results)
    return results


def _source_model_config(source: str) -> dict[str, Any]:
    """The pretrained network's model config, so every variant has the architecture whose weights it loads."""
    from components.train.transfer import registered_checkpoint

    if source.startswith("models:/"):
        return registered_checkpoint(source)["model_config"]
    if not Path(source).is_file():
        raise TransferError(f"experiments.transfer_fashion.source: {source} not found: train the mnist task first")
    return read_checkpoint(Path(source), needs=("model_config",))["model_config"]
