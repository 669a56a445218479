"""Transfer from ImageNet as an experiment (DVC stage `transfer_imagenet`, `dvc exp run`-able): EfficientNet-Lite0
(models/efficientnet_lite.py) on a Fashion-MNIST slice of a few images per class, three ways, at each budget.

- `feature_extractor`: the ImageNet backbone frozen; its pooled features of the slice and of the test split are
  computed once, and a linear head trains on them (full-batch AdamW, seconds).
- `finetune`: the ImageNet backbone and a new head train together (the backbone at `backbone_lr_scale` x lr).
- `scratch`: the same network, randomly initialised, the same train settings, data and seed.

The data is prepared once (a fixed, stratified held-out test split that no variant trains or selects on); each
budget's train split keeps the first `k` images per class of a seeded shuffle, so the budgets are nested (the
largest budget's data is work_dir/data, the others' data_<k>). The
images stay 28 x 28 grey: the model upsamples, repeats grey over RGB and maps pixels to the ImageNet range
inside its graph. `finetune` and `scratch` are normal train steps (one MLflow run each) at every budget, or
only at the largest with `every_budget: false`. The fine-tuned model of the largest budget is exported
(0..255 pixels in, like the `fashion` task's model) and registered as model `fashion_transfer`, which
`dlpipe serve --task fashion_transfer` serves; the accuracy-vs-budget plot goes to its run and `plots_path`,
the test accuracies to `metrics_path`.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from components.config import IMAGENET_LITE0, ExportConfig, PrepareConfig, RegisterConfig, TrainConfig, _Strict
from components.core import tracking
from components.core.contract import load_meta
from components.core.errors import DataError
from components.core.io import read_json, write_json
from components.data.prepare import prepare
from components.data.splits import load_split, save_npz
from components.evaluate.step import evaluate
from components.release.export import export
from components.release.register import register
from components.train.step import build_for, train

TASK = "fashion_transfer"
VARIANTS = ("scratch", "feature_extractor", "finetune")


class ImageNetTransferConfig(_Strict):
    """params.yaml `experiments.transfer_imagenet`."""

    dataset: str = Field("fashion_mnist", description="an image dataset under data/raw/")
    per_class: list[int] = Field(default_factory=lambda: [10, 30, 100], description="training images per class")
    every_budget: bool = Field(True, description="finetune and scratch at every budget (else only the largest)")
    val_size: float = Field(0.01, gt=0, lt=1, description="validation split (monitoring only: fixed epochs)")
    test_size: float = Field(0.03, gt=0, lt=1, description="the held-out test split every variant is scored on")
    model: dict[str, Any] = Field(default_factory=dict, description="efficientnet_lite0 settings (size, dropout)")
    train: dict[str, Any] = Field(default_factory=dict, description="train settings of finetune and scratch")
    backbone_lr_scale: float = Field(0.3, gt=0, le=1, description="finetune: backbone lr = lr x this")
    head_steps: int = Field(300, ge=1, description="feature_extractor: full-batch steps of the linear head")
    head_lr: float = Field(0.01, gt=0)
    head_l2: float = Field(0.01, ge=0)
    reference_metrics: str | None = Field(
        None, description="metrics JSON of a full-data model (its accuracy drawn as a reference), if it exists"
    )
    register_model: bool = Field(True, description="register the largest budget's finetune as `fashion_transfer`")
    seed: int = 42

    @field_validator("per_class")
    @classmethod
    def _budgets(cls, value: list[int]) -> list[int]:
        if not value or min(value) < 1:
            raise ValueError("give at least one budget of >= 1 image per class")
        return sorted(set(value))


def transfer_imagenet(
    raw_dir: Path, work_dir: Path, metrics_path: Path, plots_path: Path, cfg: ImageNetTransferConfig
) -> dict[str, Any]:
    """Run every variant at every budget into work_dir; export and register the largest budget's finetune.
    Returns (and writes to metrics_path) {variant: {per_class: accuracy}} with timings and the export check."""
    work_dir = Path(work_dir)
    started = time.perf_counter()
    prep = PrepareConfig(
        dataset=cfg.dataset, objective="multiclass", val_size=cfg.val_size, test_size=cfg.test_size, seed=cfg.seed
    )
    pool = work_dir / "pool"
    meta = prepare(raw_dir, pool, prep, TASK)
    largest = cfg.per_class[-1]
    # the served budget's data is work_dir/data: what `dlpipe serve` reads beside model.onnx
    dirs = {k: work_dir / ("data" if k == largest else f"data_{k}") for k in cfg.per_class}
    # largest first: a budget larger than the data fails before any slice is written
    data = {k: _budget_split(pool, dirs[k], k, cfg.seed) for k in sorted(cfg.per_class, reverse=True)}
    shutil.rmtree(pool)  # the whole train split; each budget keeps its slice (val and test are hard links)
    pre = meta.preprocessing
    model = {**cfg.model, "name": "efficientnet_lite0", "mean": pre["mean"][0], "std": pre["std"][0]}
    results: dict[str, Any] = {v: {} for v in VARIANTS}
    seconds: dict[str, float] = {}

    t = time.perf_counter()
    results["feature_extractor"] = frozen_features_study(data, model, cfg)
    seconds["feature_extractor"] = round(time.perf_counter() - t, 1)
    for k in cfg.per_class if cfg.every_budget else [largest]:
        for name, settings in (
            ("finetune", {"init_from": IMAGENET_LITE0, "backbone_lr_scale": cfg.backbone_lr_scale}),
            ("scratch", {}),
        ):
            t = time.perf_counter()
            out = work_dir / f"{name}_{k}"
            train_cfg = TrainConfig.model_validate({**cfg.train, "model": model, "seed": cfg.seed, **settings})
            train(data[k], out, train_cfg, f"{TASK}_{name}_{k}", progress=False)
            results[name][k] = evaluate(data[k], out, out / "metrics.json", out / "plots")["accuracy"]
            seconds[name] = round(seconds.get(name, 0.0) + time.perf_counter() - t, 1)

    served = work_dir / f"finetune_{largest}"
    reference = _reference(cfg.reference_metrics)
    title = f"EfficientNet-Lite0 on {cfg.dataset}, {meta.splits['test']} test images"
    plot = plot_budgets(results, Path(plots_path), title, cfg.every_budget, reference)
    with tracking.resume_task_run(served):  # beside the served model's own plots
        tracking.configure().log_artifact(str(plot), artifact_path="plots")
    parity = export(data[largest], served, work_dir, ExportConfig())
    summary: dict[str, Any] = {
        **{name: {str(k): acc for k, acc in scores.items()} for name, scores in results.items()},
        "test_images": meta.splits["test"],
        "every_budget": cfg.every_budget,
        "seconds": seconds | {"total": round(time.perf_counter() - started, 1)},
        "onnx_parity_max_abs_diff": parity["parity_max_abs_diff"],
    }
    if reference:
        summary["reference"] = {"metrics": cfg.reference_metrics, "accuracy": reference[1]}
    if cfg.register_model:
        rule = RegisterConfig(primary_metric="accuracy")
        register(data[largest], served, work_dir, served / "metrics.json", work_dir / "registration.json", TASK, rule)
    write_json(Path(metrics_path), summary)
    return summary


def _reference(path: str | None) -> tuple[str, float] | None:
    """(label, accuracy) of the full-data model whose metrics JSON `path` is, when it exists."""
    if not path or not Path(path).is_file():
        return None
    return f"{Path(path).stem}, all training data", float(read_json(Path(path))["accuracy"])


def _budget_split(pool: Path, out: Path, per_class: int, seed: int) -> Path:
    """A data dir like `pool` whose train split keeps the first `per_class` images of each class of a seeded
    shuffle (the same shuffle for every budget: smaller budgets are subsets of larger ones); val and test are
    pool's, linked."""
    with np.load(pool / "train.npz") as split:
        x, y, rows = split["x"], split["y"], split["rows"]
    order = np.random.default_rng(seed).permutation(len(y))
    counts = np.bincount(y, minlength=int(y.max()) + 1)
    if per_class > counts.min():
        raise DataError(
            f"experiments.transfer_imagenet.per_class: {per_class} images per class asked, but class "
            f"{int(counts.argmin())} has only {int(counts.min())} training images"
        )
    keep = np.sort(np.concatenate([order[y[order] == c][:per_class] for c in range(len(counts))]))
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in ("val.npz", "test.npz"):
        os.link(pool / name, out / name)
    save_npz(out / "train.npz", x[keep], y[keep], rows[keep])
    meta = load_meta(pool)
    meta.model_copy(update={"splits": {**meta.splits, "train": len(keep)}}).write(out)
    return out


def frozen_features_study(
    data: dict[int, Path], model: dict[str, Any], cfg: ImageNetTransferConfig
) -> dict[int, float]:
    """The frozen ImageNet backbone's pooled features, computed once for the largest budget's train split (every
    smaller one is a subset) and the test split; a linear head per budget; its test accuracy per budget."""
    from components.train.transfer import source_weights

    torch.manual_seed(cfg.seed)
    largest = max(data)
    meta = load_meta(data[largest])
    net = build_for(meta, TrainConfig(model=model))
    net.load_state_dict(source_weights(IMAGENET_LITE0, net.state_dict()), strict=False)
    net = net.eval().to(memory_format=torch.channels_last)
    x_pool, y_pool = load_split(data[largest], "train")
    x_test, y_test = load_split(data[largest], "test")
    f_pool, f_test = _features(net, x_pool), _features(net, x_test)
    with np.load(data[largest] / "train.npz") as split:
        pool_rows = split["rows"]
    scores = {}
    for k, data_dir in sorted(data.items()):
        with np.load(data_dir / "train.npz") as split:
            pick = np.flatnonzero(np.isin(pool_rows, split["rows"]))
        head = _linear_head(f_pool[pick], torch.as_tensor(y_pool[pick]).long(), len(meta.classes), cfg)
        scores[k] = float((head(f_test).argmax(1).numpy() == y_test).mean())
    return scores


def _features(net: torch.nn.Module, x: np.ndarray, batch: int = 250) -> torch.Tensor:
    with torch.no_grad():
        parts = [
            net.features(torch.as_tensor(x[i : i + batch]).contiguous(memory_format=torch.channels_last))
            for i in range(0, len(x), batch)
        ]
    return torch.cat(parts)


def _linear_head(
    f: torch.Tensor, y: torch.Tensor, classes: int, cfg: ImageNetTransferConfig
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A linear classifier on standardised features (the standardisation is part of the returned module)."""
    mean, std = f.mean(0), f.std(0) + 1e-6
    linear = torch.nn.Linear(f.shape[1], classes)
    opt = torch.optim.AdamW(linear.parameters(), lr=cfg.head_lr, weight_decay=cfg.head_l2)
    for _ in range(cfg.head_steps):
        loss = F.cross_entropy(linear((f - mean) / std), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def head(features: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return linear((features - mean) / std)

    return head


def plot_budgets(
    results: dict[str, dict[int, float]],
    path: Path,
    title: str,
    every_budget: bool,
    reference: tuple[str, float] | None = None,
) -> Path:
    """Test accuracy vs training images per class, one line per variant (and a reference accuracy, dashed)."""
    from components.evaluate.plots import plt, save_figure  # plots.py selects the Agg backend

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    labels = {
        "scratch": "scratch",
        "feature_extractor": "ImageNet, frozen features + linear head",
        "finetune": "ImageNet, fine-tuned",
    }
    budgets = sorted({k for scores in results.values() for k in scores})
    for name in VARIANTS:
        ks = sorted(results[name])
        ax.plot(ks, [results[name][k] for k in ks], marker="o", label=labels[name])
    if reference:
        ax.axhline(reference[1], linestyle="--", color="grey", label=f"{reference[0]} ({reference[1]:.3f})")
    ax.set_xscale("log")
    ax.set_xticks(budgets, [str(k) for k in budgets])
    ax.minorticks_off()
    ax.set(xlabel="training images per class", ylabel="test accuracy")
    ax.set_title(title if every_budget else f"{title}\n(scratch and fine-tune at the largest budget only)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    save_figure(fig, path)
    return path
