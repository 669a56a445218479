"""Per-image augmentation: v2's result for each image's own draw, and a fresh draw for every image."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from components.data.augment import build_transform
from components.data.per_image import RandomAffine, RandomHorizontalFlip, affine


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_affine_makes_what_torchvisions_kernel_makes_image_by_image(mode: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(16, 2, 20, 28)
    angle, zoom = torch.empty(16).uniform_(-20, 20), torch.empty(16).uniform_(0.8, 1.2)
    tx, ty = torch.randint(-3, 4, (16,)).float(), torch.randint(-3, 4, (16,)).float()
    out = affine(x, angle, tx, ty, zoom, fill=[-0.8, 0.5], mode=mode)
    for i in range(16):
        want = TF.affine(
            x[i],
            angle=float(angle[i]),
            translate=[int(tx[i]), int(ty[i])],
            scale=float(zoom[i]),
            shear=[0.0, 0.0],
            fill=[-0.8, 0.5],
            interpolation=TF.InterpolationMode(mode),
        )
        if mode == "nearest":
            assert torch.equal(out[i], want), f"image {i}"
        else:
            torch.testing.assert_close(out[i], want, atol=1e-4, rtol=0)
    assert (out == -0.8).any() and (out[:, 1] == 0.5).any()  # shifted-in pixels take each channel's fill


def test_each_image_gets_its_own_shift_and_flip() -> None:
    """256 copies of one asymmetric image: shifts of whole pixels up to round(0.1 x 28) = 3 either way, and about
    half of them mirrored, where v2 would move a whole group the same way."""
    torch.manual_seed(1)
    one = torch.zeros(1, 1, 28, 28)
    one[..., 10, 5] = 1.0  # a single bright pixel left of centre
    batch = one.expand(256, -1, -1, -1).contiguous()
    moved = RandomAffine(0, translate=[0.1, 0.1], fill=[0.0])(batch)
    where = moved.flatten(1).argmax(1)
    dy, dx = where // 28 - 10, where % 28 - 5
    assert set(dx.tolist()) == set(range(-3, 4)) and set(dy.tolist()) == set(range(-3, 4))
    flipped = RandomHorizontalFlip(0.5)(batch)[:, 0, 10, 28 - 1 - 5] == 1.0
    assert 0.35 < flipped.float().mean() < 0.65
    assert torch.equal(RandomHorizontalFlip(0.0)(batch), batch)


def test_a_policy_runs_its_ops_in_order_with_the_rest_per_group() -> None:
    """Flip, then erasing (torchvision's, one draw per group of 4), then a shift: each image's own shift moves the
    patch its group shares, so the order held."""
    ops = [
        {"op": "RandomHorizontalFlip", "p": 0.5},
        {"op": "RandomErasing", "p": 1.0, "value": 5.0},
        {"op": "RandomAffine", "degrees": 0, "translate": [0.2, 0.2], "fill": [0.0]},
    ]
    torch.manual_seed(2)
    out = build_transform({"group_size": 4, "ops": ops})(torch.zeros(8, 1, 16, 16))
    erased = out == 5.0
    assert erased.flatten(1).any(1).all()  # every image was erased (p = 1) before the shift
    boxes = [tuple(torch.nonzero(e[0]).min(0).values.tolist()) for e in erased]
    assert len(set(boxes[:4])) > 1  # one erasing draw per group of 4, moved by each image's own shift
