"""`dlpipe experiment`: the lessons recorded as DVC stages (vanishing gradients, transfer, encoder pretraining)."""

from __future__ import annotations

from pathlib import Path

import typer

from components.core.layout import Layout
from pipelines.cli.common import Overrides, ParamsFile, experiment_config, show

experiment_app = typer.Typer(help="Experiments that reproduce a lesson of the course.", no_args_is_help=True)


@experiment_app.command("vanishing-gradients")
def vanishing_gradients(
    params: ParamsFile = Path("params.yaml"), set_: Overrides = None, task: str = "tabular"
) -> None:
    """Deep sigmoid FFN vs ReLU, batch norm, residual: per-layer gradient norms and accuracy."""
    from components.experiments.vanishing import VanishingConfig
    from components.experiments.vanishing import vanishing_gradients as run

    cfg = experiment_config(VanishingConfig, "vanishing_gradients", params, set_)
    results = run(
        Layout(task).data, Path("metrics/vanishing_gradients.json"), Path("plots/vanishing_gradients.png"), cfg
    )
    typer.echo(f"{'variant':20s} {'first layer':>12s} {'last hidden':>12s} {'first/last':>11s} {'val acc':>8s}")
    for name, r in results.items():
        typer.echo(
            f"{name:20s} {r['first_layer_grad_norm']:12.2e} {r['last_hidden_grad_norm']:12.2e} "
            f"{r['first_over_last']:11.2e} {r['val_accuracy']:8.3f}"
        )


@experiment_app.command("vanishing-gradients-rnn")
def vanishing_gradients_rnn(params: ParamsFile = Path("params.yaml"), set_: Overrides = None) -> None:
    """Plain RNN vs LSTM vs GRU on a long-memory task: gradient w.r.t. early time steps, and accuracy."""
    from components.experiments.vanishing import VanishingRNNConfig
    from components.experiments.vanishing import vanishing_gradients_rnn as run

    cfg = experiment_config(VanishingRNNConfig, "vanishing_gradients_rnn", params, set_)
    results = run(Path("metrics/vanishing_gradients_rnn.json"), Path("plots/vanishing_gradients_rnn.png"), cfg)
    typer.echo(
        f"{'cell':6s} {'|dL/dx_0| init':>15s} {'first/last init':>16s} {'first/last trained':>19s} {'val acc':>8s}"
    )
    for name, r in results.items():
        typer.echo(
            f"{name:6s} {r['grad_first_step_init']:15.2e} {r['first_over_last_init']:16.2e} "
            f"{r['first_over_last_trained']:19.2e} {r['val_accuracy']:8.3f}"
        )


@experiment_app.command("transfer-fashion")
def transfer_fashion(params: ParamsFile = Path("params.yaml"), set_: Overrides = None) -> None:
    """MNIST-pretrained CNN on a small Fashion-MNIST slice: fine-tune vs feature extractor vs scratch."""
    from components.experiments.transfer import TransferStudyConfig, transfer_study

    cfg = experiment_config(TransferStudyConfig, "transfer_fashion", params, set_)
    results = transfer_study(
        Path("data/raw"), Path("artifacts/transfer_fashion"), Path("metrics/transfer_fashion.json"), cfg
    )
    typer.echo(f"{'variant':20s} {'accuracy':>9s} {'macro-F1':>9s} {'seconds':>8s}")
    for name, r in results.items():
        typer.echo(f"{name:20s} {r['accuracy']:9.4f} {r['macro_f1']:9.4f} {r['train_seconds']:8.1f}")


@experiment_app.command("transfer-imagenet")
def transfer_imagenet(params: ParamsFile = Path("params.yaml"), set_: Overrides = None) -> None:
    """ImageNet EfficientNet-Lite0 on Fashion-MNIST slices: fine-tune vs frozen features vs scratch, per budget."""
    from components.experiments.transfer_imagenet import ImageNetTransferConfig
    from components.experiments.transfer_imagenet import transfer_imagenet as run

    cfg = experiment_config(ImageNetTransferConfig, "transfer_imagenet", params, set_)
    results = run(
        Path("data/raw"),
        Path("artifacts/fashion_transfer"),
        Path("metrics/transfer_imagenet.json"),
        Path("plots/transfer_imagenet.png"),
        cfg,
    )
    typer.echo(f"{'images/class':>12s} " + " ".join(f"{v:>17s}" for v in ("scratch", "feature_extractor", "finetune")))
    for k in cfg.per_class:
        cells = [results[v].get(str(k)) for v in ("scratch", "feature_extractor", "finetune")]
        typer.echo(f"{k:12d} " + " ".join(f"{c:17.4f}" if c is not None else f"{'-':>17s}" for c in cells))
    typer.echo(f"seconds: {results['seconds']}")


@experiment_app.command("encoder-finetune")
def encoder_finetune(params: ParamsFile = Path("params.yaml"), set_: Overrides = None) -> None:
    """MLM-pretrained encoder vs the same encoder from scratch, fine-tuned on VADER's movie snippets."""
    from components.experiments.encoder import EncoderStudyConfig, encoder_study

    cfg = experiment_config(EncoderStudyConfig, "encoder_finetune", params, set_)
    results = encoder_study(
        Path("data/raw"),
        Path("artifacts/encoder"),
        Path("metrics/encoder_finetune.json"),
        cfg,
        Path("plots/encoder_finetune.png"),
    )
    show(results)
