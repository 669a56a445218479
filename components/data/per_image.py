"""Per-image random affine and horizontal flip for a whole batch in one call.

torchvision.transforms.v2 draws one set of random parameters per call, so a batch transform either shares a draw
across a group of images or calls the ops once per group; on a CPU each call of RandomAffine costs about 0.3 ms,
and in groups of 8 the Fashion-MNIST recipe spent 4 of its 50 ms a step there (on a GPU, most of the step). These two
draw their parameters per image from v2's distributions (angle, whole-pixel shifts, zoom; p = 0.5 flips) and
apply them with one `grid_sample` on the same inverse matrices and sampling grid as v2's affine kernel: with the
same parameters an image comes out as `v2.functional.affine` makes it, pixel for pixel with v2's default nearest
sampling and within float rounding with bilinear (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class RandomAffine:
    """v2.RandomAffine(degrees, translate, scale, fill, interpolation) without shear, one draw per image."""

    def __init__(
        self,
        degrees: float | list[float],
        translate: list[float] | None = None,
        scale: list[float] | None = None,
        fill: float | list[float] | None = None,
        interpolation: str = "nearest",
    ) -> None:
        self.degrees = [-degrees, degrees] if isinstance(degrees, int | float) else list(degrees)
        self.translate, self.scale, self.mode = translate, scale, interpolation
        self.fill = fill if fill is None or isinstance(fill, list) else [float(fill)]

    def params(self, n: int, height: int, width: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(n,) angles in degrees, whole-pixel shifts x and y, zoom factors: v2.RandomAffine's draws, n at a time."""
        angle = torch.empty(n).uniform_(*self.degrees)
        shift = torch.zeros(2, n)
        if self.translate is not None:
            for axis, size in enumerate((width, height)):
                most = float(self.translate[axis] * size)
                shift[axis] = torch.empty(n).uniform_(-most, most).round()
        zoom = torch.empty(n).uniform_(*self.scale) if self.scale is not None else torch.ones(n)
        return angle, shift[0], shift[1], zoom

    def __call__(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H, W)
        return affine(x, *self.params(len(x), *x.shape[-2:]), fill=self.fill, mode=self.mode)


def affine(
    x: Tensor, angle: Tensor, tx: Tensor, ty: Tensor, zoom: Tensor, fill: list[float] | None, mode: str = "nearest"
) -> Tensor:
    """Image b of x (B, C, H, W) rotated by angle[b] degrees about its centre, zoomed by zoom[b] and shifted by
    (tx[b], ty[b]) pixels; pixels from outside the image take `fill` (per channel), else 0."""
    b, c, h, w = x.shape
    like = {"device": x.device, "dtype": x.dtype}
    rot = torch.deg2rad(angle.double())
    cos, sin = rot.cos() / zoom, rot.sin() / zoom  # the inverse of rotate-then-zoom, as v2 computes it
    theta = torch.stack(
        [
            torch.stack([cos, sin, -(cos * tx + sin * ty)], 1),
            torch.stack([-sin, cos, -(-sin * tx + cos * ty)], 1),
        ],
        1,
    ).to(**like)  # (B, 2, 3): output pixel (centred coordinates) -> the input pixel it samples
    xs = torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, w, **like)  # pixel centres about the image's centre
    ys = torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, h, **like)
    base = torch.stack([xs.expand(h, w), ys.unsqueeze(1).expand(h, w), torch.ones(h, w, **like)], -1)  # (H, W, 3)
    scale = torch.tensor([0.5 * w, 0.5 * h], **like)  # pixels -> grid_sample's [-1, 1]
    per_image = (theta.transpose(1, 2) / scale).permute(1, 0, 2).reshape(3, b * 2)  # (3, B * 2): one matmul for all
    grid = (base.view(h * w, 3) @ per_image).view(h, w, b, 2).permute(2, 0, 1, 3)  # (B, H, W, 2)
    if fill is None:
        return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)
    out = F.grid_sample(torch.cat([x, torch.ones_like(x[:, :1])], 1), grid, mode, "zeros", align_corners=False)
    out, inside = out[:, :c], out[:, c:]  # inside: 1 where the sample fell within the image
    colour = torch.tensor(fill, device=x.device, dtype=x.dtype).view(1, -1, 1, 1).expand_as(out)
    if mode == "nearest":
        return torch.where(inside < 0.5, colour, out)
    return (out - colour) * inside + colour


class RandomHorizontalFlip:
    """v2.RandomHorizontalFlip(p), one draw per image."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H, W)
        flip = (torch.rand(len(x)) < self.p).to(x.device).view(-1, 1, 1, 1)
        return torch.where(flip, x.flip(-1), x)


OPS = {"RandomAffine": RandomAffine, "RandomHorizontalFlip": RandomHorizontalFlip}


def supports(spec: dict) -> bool:
    """Whether an augment.json op runs here, per image: the two ops above, without a shear or a centre."""
    return spec["op"] in OPS and not spec.get("shear") and spec.get("center") is None
