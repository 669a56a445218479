"""Augment step: the task's augmentation policy (augment.json) and a preview grid of augmented samples.

The policy is a list of torchvision.transforms.v2 ops with their arguments, resolved against meta.json:
geometric ops fill with the normalised background (pixel 0), colour jitter runs on un-normalised pixels.
Train rebuilds it with `build_transform` and applies it on the fly to every training batch on the
training device (GPU when there is one): affine and flip draw per image (per_image.py), each other op once per
group of `group_size` images.
Tabular tasks get an empty policy, so every task has the same steps; torch and torchvision are imported only where
a policy has ops, so a table's augment step (and its train step) never loads them for nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from components.config import AugmentConfig, ConfigError
from components.core.contract import TaskMeta, load_meta
from components.core.io import atomic_write, read_json, write_json
from components.data.splits import load_split

if TYPE_CHECKING:
    from torch import Tensor

POLICY, PREVIEW = "augment.json", "preview.png"
OPS = ("RandomAffine", "RandomResizedCrop", "RandomHorizontalFlip", "ColorJitter", "GaussianNoise", "RandomErasing")


def augment(data_dir: Path, out_dir: Path, cfg: AugmentConfig, task: str) -> dict[str, Any]:
    """Write `out_dir/augment.json` (and `preview.png` for image tasks with ops); return the policy."""
    meta = load_meta(data_dir)
    policy = {"task": task, "group_size": cfg.group_size, "ops": ops_for(cfg, meta, task), "config": cfg.model_dump()}
    out_dir = Path(out_dir)
    write_json(out_dir / POLICY, policy)
    (out_dir / PREVIEW).unlink(missing_ok=True)
    if policy["ops"] and cfg.preview:
        import torch

        x, _ = load_split(data_dir, "train")
        torch.manual_seed(cfg.seed)
        sample = torch.as_tensor(x[: cfg.preview])
        save_grid(build_transform(policy, meta)(sample), meta.preprocessing, out_dir / PREVIEW)
    return policy


def ops_for(cfg: AugmentConfig, meta: TaskMeta, task: str) -> list[dict[str, Any]]:
    """The v2 ops (name + kwargs) the config asks for, with fill values and sizes from meta.json."""
    pre = meta.preprocessing
    wanted = cfg.rotation or cfg.translate or cfg.scale or cfg.crop_scale or cfg.hflip
    if pre is None:
        if wanted or cfg.colour_jitter or cfg.noise_std or cfg.erasing:
            raise ConfigError(f"augment.{task}: augmentation needs an image task; {meta.dataset} is tabular")
        return []
    mean, std = np.asarray(pre["mean"]), np.asarray(pre["std"])
    background = (-mean / std).round(6).tolist()  # pixel value 0 after normalisation
    ops: list[dict[str, Any]] = []
    if cfg.crop_scale:
        ops.append({"op": "RandomResizedCrop", "size": pre["resize"], "scale": list(cfg.crop_scale), "antialias": True})
    if cfg.rotation or cfg.translate or cfg.scale:
        translate = [cfg.translate, cfg.translate] if cfg.translate else None
        scale = list(cfg.scale) if cfg.scale else None
        ops.append(
            {"op": "RandomAffine", "degrees": cfg.rotation, "translate": translate, "scale": scale, "fill": background}
        )
    if cfg.hflip:
        ops.append({"op": "RandomHorizontalFlip", "p": 0.5})
    if cfg.colour_jitter:
        if pre["channels"] != 3:
            raise ConfigError(
                f"augment.{task}.colour_jitter: needs RGB images; this task has {pre['channels']} channel"
            )
        j = cfg.colour_jitter
        ops.append({"op": "ColorJitter", "brightness": j, "contrast": j, "saturation": j, "denormalise": True})
    if cfg.noise_std:
        ops.append({"op": "GaussianNoise", "sigma": cfg.noise_std, "clip": False})
    if cfg.erasing:
        ops.append({"op": "RandomErasing", "p": cfg.erasing, "value": 0.0})
    return ops


class _Denormalised:
    """Run an op on 0..1 pixels (colour jitter means nothing on normalised values), then normalise back."""

    def __init__(self, op: Callable[[Tensor], Tensor], mean: list[float], std: list[float]) -> None:
        import torch

        self.op, self.mean, self.std = op, torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)

    def __call__(self, x: Tensor) -> Tensor:
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return (self.op((x * std + mean).clamp(0, 1)) - mean) / std


def build_transform(policy: dict[str, Any], meta: TaskMeta | None = None) -> Callable[[Tensor], Tensor] | None:
    """A batch transform (B, C, H, W) -> (B, C, H, W) from a policy, or None when it has no ops.

    RandomAffine and RandomHorizontalFlip draw per image in one call for the whole batch (per_image.py); the other
    ops run as torchvision's, one call and one draw per group of `group_size` images. The policy's order holds."""
    if not policy["ops"]:
        return None
    import torch
    from torchvision.transforms import v2  # 1.4-1.9 s of import (it loads torch._dynamo): only with ops

    from components.data import per_image

    stages: list[Callable[[Tensor], Tensor]] = []  # each over the whole batch
    grouped: list[Callable[[Tensor], Tensor]] = []  # torchvision ops waiting to run per group
    group = policy["group_size"]

    def per_group(ops: list[Callable[[Tensor], Tensor]]) -> Callable[[Tensor], Tensor]:
        compose = v2.Compose(ops)
        return lambda x: torch.cat([compose(part) for part in x.split(group)])

    for spec in policy["ops"]:
        kwargs = {k: v for k, v in spec.items() if k not in ("op", "denormalise")}
        if spec["op"] not in OPS:
            raise ConfigError(f"augment policy: unknown op {spec['op']!r}; allowed: {', '.join(OPS)}")
        if per_image.supports(spec):
            stages += [per_group(grouped)] if grouped else []
            grouped = []
            stages.append(per_image.OPS[spec["op"]](**kwargs))
            continue
        op = getattr(v2, spec["op"])(**kwargs)
        if spec.get("denormalise"):
            pre = (meta.preprocessing if meta is not None else None) or {}
            op = _Denormalised(op, pre["mean"], pre["std"])
        grouped.append(op)
    stages += [per_group(grouped)] if grouped else []

    def transform(x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H, W)
        for stage in stages:
            x = stage(x)
        return x

    return transform


def load_transform(augment_dir: Path | None, meta: TaskMeta) -> Callable[[Tensor], Tensor] | None:
    """The transform of the policy the augment step wrote (None without one)."""
    if augment_dir is None or not (Path(augment_dir) / POLICY).is_file():
        return None
    return build_transform(read_json(Path(augment_dir) / POLICY), meta)


def save_grid(x: Tensor, preprocessing: dict[str, Any], path: Path) -> None:
    """Normalised images (B, C, H, W) as a PNG grid (pixels restored, small images enlarged)."""
    import torch
    from PIL import Image
    from torchvision.utils import make_grid

    mean = torch.tensor(preprocessing["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(preprocessing["std"]).view(1, -1, 1, 1)
    pixels = (x.detach().cpu() * std + mean).clamp(0, 1)
    scale = max(1, 56 // pixels.shape[-1])
    pixels = pixels.repeat_interleave(scale, -1).repeat_interleave(scale, -2)  # nearest-neighbour enlargement
    grid = make_grid(pixels, nrow=8, padding=2, pad_value=0.5)  # (C, H', W')
    array = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    atomic_write(
        path, lambda tmp: Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(tmp, "PNG")
    )
