"""Experiments that reproduce a lesson of the course with the real trainer (DVC stages, `dvc exp run`-able).

vanishing_gradients: the same deep FFN with sigmoid, with ReLU, with sigmoid + batch norm and with
sigmoid + residual connections. Per-layer gradient norms (from the trainer's diagnostics) show the
first layers' gradients vanish only in the plain sigmoid network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from pydantic import Field  # noqa: E402

from components import objectives  # noqa: E402
from components.config import ModelConfig, TrainConfig, _Strict  # noqa: E402
from components.io import write_json  # noqa: E402
from components.prepare import load_meta, load_split  # noqa: E402
from components.trainer import fit, seed_everything  # noqa: E402
from models import build_model  # noqa: E402


class VanishingConfig(_Strict):
    """params.yaml `experiments.vanishing_gradients`."""

    depth: int = Field(12, ge=2, description="hidden layers")
    width: int = Field(32, ge=1)
    epochs: int = Field(10, ge=1)
    optimizer: str = "gd"
    lr: float = Field(0.1, gt=0)
    batch_size: int = Field(32, ge=1)
    seed: int = 42
    variants: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {
            "sigmoid": {"activation": "sigmoid"},
            "relu": {"activation": "relu"},
            "sigmoid_batchnorm": {"activation": "sigmoid", "norm": "batch"},
            "sigmoid_residual": {"activation": "sigmoid", "residual": True},
        }
    )


def vanishing_gradients(data_dir: Path, metrics_path: Path, plot_path: Path, cfg: VanishingConfig) -> dict[str, Any]:
    """Train each variant briefly; report first- vs last-hidden-layer gradient norms and accuracy."""
    meta = load_meta(data_dir)
    objective = meta["objective"]
    train = [
        torch.as_tensor(a) if i == 0 else objectives.targets(a, objective)
        for i, a in enumerate(load_split(data_dir, "train"))
    ]
    val = [
        torch.as_tensor(a) if i == 0 else objectives.targets(a, objective)
        for i, a in enumerate(load_split(data_dir, "val"))
    ]
    results: dict[str, Any] = {}
    profiles: dict[str, list[float]] = {}
    for name, overrides in cfg.variants.items():
        model_cfg = ModelConfig.model_validate({"hidden": [cfg.width] * cfg.depth, **overrides})
        tcfg = TrainConfig(
            model=model_cfg,
            optimizer=cfg.optimizer,
            lr=cfg.lr,
            batch_size=cfg.batch_size,
            epochs=cfg.epochs,
            seed=cfg.seed,
            early_stopping={"enabled": False},
            gradients={"samples_per_epoch": 1000, "vanish_below": 0.0},
            device="cpu",
        )
        seed_everything(cfg.seed)
        model = build_model(
            "ffn",
            in_features=len(meta["feature_names"]),
            out_features=objectives.output_size(meta),
            **model_cfg.kwargs(),
        )
        result = fit(
            model,
            objectives.loss_fn(objective),
            tuple(train),
            tuple(val),
            tcfg,
            metric_fn=objectives.metric_fn(objective),
            progress=False,
        )
        first_epoch = result.history[0]
        layers = [k for k in first_epoch if k.startswith("grad_norm/blocks.")]
        profiles[name] = [first_epoch[k] for k in layers]
        results[name] = {
            "first_layer_grad_norm": profiles[name][0],
            "last_hidden_grad_norm": profiles[name][-1],
            "first_over_last": profiles[name][0] / profiles[name][-1],
            "val_accuracy": result.history[-1]["val_accuracy"],
        }
    write_json(Path(metrics_path), results)
    _plot(profiles, Path(plot_path), cfg)
    return results


def _plot(profiles: dict[str, list[float]], path: Path, cfg: VanishingConfig) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, norms in profiles.items():
        ax.semilogy(range(1, len(norms) + 1), norms, marker="o", ms=3, label=name)
    ax.set(
        xlabel="hidden layer (1 = nearest the input)",
        ylabel="mean gradient norm, epoch 1",
        title=f"Vanishing gradients: {cfg.depth} hidden layers of {cfg.width}",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
