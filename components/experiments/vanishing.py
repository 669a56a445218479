"""Experiments that reproduce a lesson of the course with the real trainer (DVC stages, `dvc exp run`-able).

vanishing_gradients: the same deep FFN with sigmoid, with ReLU, with sigmoid + batch norm and with
sigmoid + residual connections. Per-layer gradient norms (from the trainer's diagnostics) show the
first layers' gradients vanish only in the plain sigmoid network.

vanishing_gradients_rnn: the same lesson through time. A plain RNN, an LSTM and a GRU must remember the
first step of a long noisy sequence; the loss's gradient with respect to early steps shows whether the
signal still reaches them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from pydantic import Field  # noqa: E402

from components.config import ModelConfig, TrainConfig, _Strict  # noqa: E402
from components.core.contract import load_meta  # noqa: E402
from components.core.io import write_json  # noqa: E402
from components.data.splits import load_split
from components.train import objectives  # noqa: E402
from components.train.loop import fit, seed_everything  # noqa: E402
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
    objective = meta.objective
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
            in_features=len(meta.feature_names),
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
    _plot_profiles(
        {name: dict(enumerate(norms, start=1)) for name, norms in profiles.items()},
        Path(plot_path),
        xlabel="hidden layer (1 = nearest the input)",
        ylabel="mean gradient norm, epoch 1",
        title=f"Vanishing gradients: {cfg.depth} hidden layers of {cfg.width}",
        marker="o",
    )
    return results


def _plot_profiles(
    profiles: dict[str, dict[int, float]], path: Path, xlabel: str, ylabel: str, title: str, marker: str = ""
) -> None:
    """One log-scale gradient-norm curve per variant (both vanishing-gradient experiments)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, norms in profiles.items():
        ax.semilogy(list(norms), list(norms.values()), marker=marker or None, ms=3, label=name)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class VanishingRNNConfig(_Strict):
    """params.yaml `experiments.vanishing_gradients_rnn`: remember the first step of a long noisy sequence."""

    length: int = Field(50, ge=2, description="time steps per sequence")
    hidden: int = Field(32, ge=1)
    n_train: int = Field(4000, ge=10)
    n_val: int = Field(500, ge=10)
    noise: float = Field(1.0, ge=0, description="std of the distracting values after the first step")
    epochs: int = Field(10, ge=1)
    optimizer: str = "adam"
    lr: float = Field(0.003, gt=0)
    batch_size: int = Field(32, ge=1)
    cells: list[str] = Field(default_factory=lambda: ["rnn", "lstm", "gru"])
    gate_bias: float = Field(3.0, description="LSTM forget / GRU update gate bias at init (about log(length))")
    seed: int = 42


def memory_task(n: int, length: int, noise: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """x [n, length, 1]: step 0 is +-1 (the label), every later step Gaussian noise; y [n, 1] in {0, 1}."""
    sign = torch.randint(0, 2, (n,), generator=gen)
    x = torch.randn(n, length, 1, generator=gen) * noise
    x[:, 0, 0] = sign.float() * 2 - 1
    return x, sign.float().unsqueeze(1)


def input_gradients(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Mean over the batch of |dLoss/dx_t| for every time step t: how much each step still moves the loss."""
    model.eval()
    x = x.clone().requires_grad_(True)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
    (grad,) = torch.autograd.grad(loss, x)
    return (grad.abs().sum(-1).mean(0) * len(x)).tolist()  # x len(x): undo the loss's batch mean


def vanishing_gradients_rnn(metrics_path: Path, plot_path: Path, cfg: VanishingRNNConfig) -> dict[str, Any]:
    """Per cell: the loss's gradient w.r.t. the first and the last time step (at initialisation and after
    training), and validation accuracy: a plain RNN's gradient from step 0 vanishes over the sequence and it
    cannot learn the task; LSTM and GRU gates keep the path open."""
    gen = torch.Generator().manual_seed(cfg.seed)
    x_tr, y_tr = memory_task(cfg.n_train, cfg.length, cfg.noise, gen)
    x_va, y_va = memory_task(cfg.n_val, cfg.length, cfg.noise, gen)
    probe = (x_va[:256], y_va[:256])
    results: dict[str, Any] = {}
    profiles: dict[str, list[float]] = {}
    for cell in cfg.cells:
        seed_everything(cfg.seed)
        model = build_model("rnn", out_features=1, in_features=1, cell=cell, hidden=cfg.hidden, gate_bias=cfg.gate_bias)
        at_init = input_gradients(model, *probe)
        tcfg = TrainConfig(
            model={"name": "rnn", "cell": cell, "hidden": cfg.hidden, "gate_bias": cfg.gate_bias},
            optimizer=cfg.optimizer,
            lr=cfg.lr,
            batch_size=cfg.batch_size,
            epochs=cfg.epochs,
            seed=cfg.seed,
            early_stopping={"enabled": False},
            gradients={"track": False},
            device="cpu",
            threads=1,
        )
        result = fit(
            model,
            objectives.loss_fn("binary"),
            (x_tr, y_tr),
            (x_va, y_va),
            tcfg,
            metric_fn=objectives.metric_fn("binary"),
            progress=False,
        )
        trained = input_gradients(model, *probe)
        profiles[cell] = at_init
        results[cell] = {
            "grad_first_step_init": at_init[0],
            "grad_last_step_init": at_init[-1],
            "first_over_last_init": at_init[0] / at_init[-1],
            "first_over_last_trained": trained[0] / trained[-1],
            "val_accuracy": result.history[-1]["val_accuracy"],
        }
    write_json(Path(metrics_path), results)
    _plot_profiles(
        {name: dict(enumerate(norms)) for name, norms in profiles.items()},
        Path(plot_path),
        xlabel="time step (0 = the step that holds the label)",
        ylabel="|dLoss / dx_t| at initialisation",
        title=f"Vanishing gradients through time ({cfg.length} steps, hidden {cfg.hidden})",
    )
    return results
