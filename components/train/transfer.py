"""Transfer learning: start a model's backbone from earlier weights, then fine-tune it or freeze it.

`init_from` names the weights: `models:/<name>@<alias>` (the registry holds ONNX only, so the checkpoint.pt
that train logged in the registered version's run is used), a checkpoint.pt path, `torchvision:<arch>`
(ImageNet weights, from the local torch hub cache only: there is no network to download them),
`imagenet:efficientnet_lite0` (EfficientNet-Lite0's ImageNet weights, an installed package), or `minilm`
(all-MiniLM-L6-v2's BERT encoder from an optional package, components/data/text/minilm.py).
Only backbone weights whose names and shapes match are loaded; the head always starts fresh.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from components.config import IMAGENET_LITE0, MINILM, TrainConfig
from components.core import tracking
from components.core.errors import TransferError
from components.core.io import read_checkpoint

CHECKPOINT_ARTIFACT = "checkpoint"  # train logs checkpoint.pt under this artifact path of its run


def source_weights(init_from: str, own: dict[str, Tensor]) -> dict[str, Tensor]:
    """The state dict `init_from` points at (loaded with weights_only=True), for a model whose own is `own`."""
    if init_from == MINILM:
        from components.data.text import minilm as pretrained_text  # it imports this module

        return pretrained_text.backbone_weights(own)
    if init_from == IMAGENET_LITE0:
        from models.efficientnet_lite import imagenet_backbone

        try:
            return imagenet_backbone()
        except ImportError as err:
            raise TransferError(f"train.init_from {init_from}: {err}") from None
    if init_from.startswith("models:/"):
        return _best_weights(registered_checkpoint(init_from))
    if init_from.startswith("torchvision:"):
        return {f"backbone.{k}": v for k, v in _torchvision_weights(init_from.split(":", 1)[1]).items()}
    path = Path(init_from)
    if not path.is_file():
        raise TransferError(
            f"train.init_from: {init_from!r} is neither models:/<name>@<alias>, torchvision:<arch>, {IMAGENET_LITE0}, "
            f"{MINILM}, "
            "nor an existing checkpoint file"
        )
    return _best_weights(read_checkpoint(path))


def _best_weights(ckpt: dict[str, Any]) -> dict[str, Tensor]:
    return ckpt.get("best_model", ckpt)


def registered_checkpoint(uri: str) -> dict[str, Any]:
    """The checkpoint dict that trained a registered model (models:/<name>@<alias>, or its latest version)."""
    from mlflow.exceptions import MlflowException

    mlflow = tracking.configure()
    name, _, alias = uri.removeprefix("models:/").partition("@")
    client = mlflow.MlflowClient()
    with tempfile.TemporaryDirectory(prefix="dlpipe-checkpoint-") as tmp:
        try:
            version = client.get_model_version_by_alias(name, alias) if alias else client.get_latest_versions(name)[-1]
            local = mlflow.artifacts.download_artifacts(
                run_id=version.run_id, artifact_path=f"{CHECKPOINT_ARTIFACT}/checkpoint.pt", dst_path=tmp
            )
        except (MlflowException, IndexError, OSError) as err:
            raise TransferError(f"train.init_from: cannot get the checkpoint of {uri}: {err}") from None
        return read_checkpoint(local)


def _torchvision_weights(arch: str) -> dict[str, Tensor]:
    import torchvision

    weights = torchvision.models.get_model_weights(arch).DEFAULT
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not path.is_file():
        raise TransferError(
            f"train.init_from torchvision:{arch}: pretrained weights are not in the local torch cache ({path}). "
            f'On a machine with a network run `python -c "import torchvision; torchvision.models.{arch}'
            f"(weights='DEFAULT')\"` and copy {path.name} into {path.parent} (or set TORCH_HOME)."
        )
    return read_checkpoint(path)


def apply(model: nn.Module, cfg: TrainConfig) -> tuple[list[dict[str, Any]] | None, dict[str, Any]]:
    """Load `cfg.init_from` into the model's backbone; freeze it or give it a lower lr.

    Returns the optimizer's parameter groups (None = all parameters alike) and a summary to log."""
    if cfg.init_from is None:
        return None, {}
    own = model.state_dict()
    source = source_weights(cfg.init_from, own)
    loaded = {k: v for k, v in source.items() if k.startswith("backbone.") and k in own and own[k].shape == v.shape}
    if not loaded.keys() & dict(model.named_parameters()).keys():  # BN step counters alone do not count
        raise TransferError(f"train.init_from {cfg.init_from}: no backbone weights match this model's layers")
    model.load_state_dict(loaded, strict=False)
    backbone = [p for n, p in model.named_parameters() if n.startswith("backbone.")]
    head = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    info = {"init_from": cfg.init_from, "transfer": cfg.transfer, "tensors_loaded": len(loaded)}
    if cfg.transfer == "feature_extractor":
        model.freeze_backbone()
        return [{"params": head}], info
    if cfg.backbone_lr_scale < 1:
        return [{"params": backbone, "lr": cfg.lr * cfg.backbone_lr_scale}, {"params": head}], info
    return None, info
