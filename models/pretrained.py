"""torchvision architectures (ResNet-18, MobileNetV3-small) as a backbone with a new classifier head.

Their ImageNet weights come from the local torch hub cache only (`init_from: torchvision:<arch>`, see
components/train/transfer.py); a 1-channel input is repeated to the 3 channels the backbone expects.
"""

from __future__ import annotations

from torch import Tensor, nn

FEATURES = {"resnet18": ("fc", 512), "mobilenet_v3_small": ("classifier", 576)}


class TorchvisionNet(nn.Module):
    def __init__(self, in_channels: int, image_size: tuple[int, int], out_features: int, arch: str = "resnet18"):
        super().__init__()
        import torchvision

        if in_channels not in (1, 3):
            raise ValueError(f"torchvision backbones take 1 or 3 channels, not {in_channels}")
        classifier, features = FEATURES[arch]
        self.backbone = getattr(torchvision.models, arch)(weights=None)
        setattr(self.backbone, classifier, nn.Identity())  # the backbone now ends in pooled features
        self.head = nn.Linear(features, out_features)
        self.in_channels, self.frozen = in_channels, False

    def freeze_backbone(self) -> None:
        self.frozen = True
        self.backbone.requires_grad_(False)
        self.backbone.eval()

    def train(self, mode: bool = True) -> TorchvisionNet:
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, out_features)
        if self.in_channels == 1:
            x = x.expand(-1, 3, -1, -1)  # (B, 3, H, W)
        return self.head(self.backbone(x))  # (B, features) -> (B, out_features)
