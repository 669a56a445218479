"""Configurable CNN: conv blocks -> global pooling -> classifier head.

A block is `convs_per_block` x (Conv2d -> [BatchNorm2d] -> activation), the first conv with `stride`, then
max / average pooling and 2-D dropout. With `pool_early` the pooling comes right after the first conv, before its
norm and activation (airbench's order): those then work on a quarter of the pixels, and on a CPU, where they are
memory-bound, a training step of Fashion-MNIST's network takes about a quarter less time. With `residual` the
block adds its input back (through a 1x1 projection when channels or stride change), as in ResNet. Padding is
'same' (odd kernels), 'valid' or a pixel count. `backbone` (the blocks) and `head` are separate attributes so
transfer learning can load or freeze the backbone alone. With `tta_hflip` the model in eval mode averages the
logits of each image and its mirror image (test-time augmentation, for datasets whose classes do not change under
a horizontal flip); the exported ONNX graph carries it, so serving answers as evaluation measured.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.ffn import ACTIVATIONS


def _padding(padding: str | int, kernel: int) -> int:
    return {"same": kernel // 2, "valid": 0}.get(padding, padding) if isinstance(padding, str) else padding


class ConvBlock(nn.Module):
    """(B, c_in, H, W) -> (B, c_out, H', W'): convs, optional skip, pooling, dropout."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        *,
        convs: int,
        kernel: int,
        padding: int,
        stride: int,
        pool: str,
        pool_size: int,
        batch_norm: bool,
        residual: bool,
        activation: str,
        dropout: float,
        pool_early: bool = False,
    ) -> None:
        super().__init__()
        if residual and pool_early:
            raise ValueError("pool_early does not combine with residual blocks (the skip would skip the pooling)")
        pools = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}
        pooling = pools[pool](pool_size) if pool in pools else nn.Identity()
        layers: list[nn.Module] = []
        for i in range(convs):
            conv_in, conv_stride = (c_in, stride) if i == 0 else (c_out, 1)
            layers.append(nn.Conv2d(conv_in, c_out, kernel, conv_stride, padding, bias=not batch_norm))
            if i == 0 and pool_early:
                layers.append(pooling)
            layers.append(nn.BatchNorm2d(c_out) if batch_norm else nn.Identity())
            if not (residual and i == convs - 1):  # a residual block activates after the addition
                layers.append(ACTIVATIONS[activation]())
        self.convs = nn.Sequential(*layers)
        self.skip: nn.Module | None = None
        if residual:
            same = c_in == c_out and stride == 1
            self.skip = nn.Identity() if same else nn.Conv2d(c_in, c_out, 1, stride, bias=False)
            self.act = ACTIVATIONS[activation]()
        self.pool = nn.Identity() if pool_early else pooling
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.convs(x)  # (B, c_out, H / stride, W / stride) with 'same' padding; pooled too with pool_early
        if self.skip is not None:
            out = self.act(out + self.skip(x))
        return self.drop(self.pool(out))  # (B, c_out, H', W') after pooling


class CNN(nn.Module):
    def __init__(
        self,
        in_channels: int,
        image_size: tuple[int, int],
        out_features: int,
        channels: list[int],
        convs_per_block: int = 2,
        kernel: int = 3,
        padding: str | int = "same",
        stride: int = 1,
        pool: str = "max",
        pool_size: int = 2,
        pool_early: bool = False,
        batch_norm: bool = True,
        residual: bool = False,
        activation: str = "relu",
        dropout: float = 0.0,
        global_pool: str = "avg",
        head: list[int] | None = None,
        head_dropout: float = 0.0,
        tta_hflip: bool = False,
    ) -> None:
        super().__init__()
        widths = [in_channels, *channels]
        pad = _padding(padding, kernel)
        common = {
            "convs": convs_per_block,
            "kernel": kernel,
            "padding": pad,
            "stride": stride,
            "pool_size": pool_size,
            "pool_early": pool_early,
            "batch_norm": batch_norm,
            "residual": residual,
            "activation": activation,
            "dropout": dropout,
        }
        size = list(image_size)  # [height, width] of the feature map as the blocks shrink it
        before = 1 if pool_early else convs_per_block  # a block's convs before its pooling
        blocks = []
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            size = [_after_convs(s, before, kernel, pad, stride) for s in size]
            # Pool only while the feature map is still at least pool_size wide (8x8 digits run out early).
            block_pool = pool if min(size) >= pool_size else "none"
            blocks.append(ConvBlock(c_in, c_out, pool=block_pool, **common))
            if block_pool != "none":
                size = [s // pool_size for s in size]
            size = [_after_convs(s, convs_per_block - before, kernel, pad, 1) for s in size]
            if min(size) < 1:
                raise ValueError(f"the feature map vanishes after block {len(blocks)}: use fewer blocks or padding")
        self.backbone = nn.Sequential(*blocks)
        self.global_pool = {"avg": nn.AdaptiveAvgPool2d(1), "max": nn.AdaptiveMaxPool2d(1)}.get(global_pool)
        features = widths[-1] * (1 if self.global_pool is not None else size[0] * size[1])
        layers: list[nn.Module] = []
        for hidden in head or []:
            layers += [nn.Linear(features, hidden), ACTIVATIONS[activation]()]
            layers += [nn.Dropout(head_dropout)] if head_dropout > 0 else []
            features = hidden
        self.head = nn.Sequential(*layers, nn.Linear(features, out_features))
        self.frozen = False
        self.tta_hflip = tta_hflip
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")

    def freeze_backbone(self) -> None:
        """Feature extractor: backbone weights fixed and its batch-norm statistics kept (eval mode)."""
        self.frozen = True
        self.backbone.requires_grad_(False)
        self.backbone.eval()

    def train(self, mode: bool = True) -> CNN:
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, out_features)
        if self.tta_hflip and not self.training:
            both = self.logits(torch.cat([x, x.flip(-1)]))  # (2B, out_features): the images, then their mirrors
            return both.unflatten(0, (2, -1)).mean(0)  # (B, out_features); no batch size baked into ONNX
        return self.logits(x)

    def logits(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, out_features), one pass
        x = self.backbone(x)  # (B, channels[-1], h, w)
        x = self.global_pool(x) if self.global_pool is not None else x  # (B, channels[-1], 1, 1)
        return self.head(x.flatten(1))  # (B, features) -> (B, out_features)


def _after_convs(size: int, convs: int, kernel: int, pad: int, stride: int) -> int:
    for i in range(convs):
        size = (size + 2 * pad - kernel) // (stride if i == 0 else 1) + 1
    return size
