"""CNN tasks: image ingest and prepare, the configurable CNN, augmentation, transfer learning, evaluation and
export, all on scikit-learn's 8x8 digits so the whole file stays fast."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from components.config import AugmentConfig, ConfigError, PrepareConfig, TrainConfig, validate
from components.core.contract import load_meta
from components.core.errors import DataError, TransferError
from components.data import ingest as ingest_module
from components.data.augment import augment, build_transform
from components.data.images import read_idx
from components.data.ingest import ingest, ingest_images
from components.data.prepare import prepare
from components.data.splits import load_split
from components.release.export import run_onnx
from components.train.checkpoint import load_trained
from components.train.objectives import OutputHead
from components.train.step import train
from models import build_model, summarize
from tests.conftest import PARAMS

# --- data -----------------------------------------------------------------------------------------------


def test_idx_originals_are_copied_byte_for_byte(tmp_path: Path) -> None:
    out = ingest("mnist_test", tmp_path)
    src = ingest_module.shared_datasets() / "mnist-test"
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert (out / name).read_bytes() == (src / name).read_bytes()
    assert read_idx(out / "t10k-images-idx3-ubyte.gz").shape == (10000, 28, 28)


def test_fashion_without_network_or_package_says_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("no network")

    monkeypatch.setattr(ingest_module, "FASHION_DIRS", (tmp_path / "nowhere",))
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        ingest("fashion_mnist", tmp_path)


@pytest.fixture(scope="module")
def digits_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("digits-data")
    ingest("digits", root / "raw")
    prepare(root / "raw", root / "data", PrepareConfig(dataset="digits", objective="multiclass"), "digits")
    return root / "data"


def test_image_prepare_meta_and_train_only_statistics(digits_data: Path) -> None:
    meta = load_meta(digits_data)
    assert meta.input.shape == [None, 1, 8, 8] and meta.classes == [str(k) for k in range(10)]
    pre = meta.preprocessing
    assert pre["resize"] == [8, 8] and pre["grayscale"] and pre["channels"] == 1
    x_train, y_train = load_split(digits_data, "train")
    x_test, y_test = load_split(digits_data, "test")
    assert x_train.dtype == np.float32 and x_train.shape[1:] == (1, 8, 8)
    assert abs(float(x_train.mean())) < 1e-3 and abs(float(x_train.std()) - 1) < 1e-3  # train statistics
    assert abs(float(x_test.mean())) > 1e-4
    shares = [np.bincount(y, minlength=10) / len(y) for y in (y_train, y_test)]
    assert np.abs(shares[0] - shares[1]).max() < 0.02  # stratified


def test_train_limit_keeps_val_and_test(tmp_path: Path, digits_data: Path) -> None:
    raw = digits_data.parent / "raw"
    cfg = PrepareConfig(dataset="digits", objective="multiclass", train_limit=100)
    meta = prepare(raw, tmp_path / "small", cfg, "small")
    assert meta.splits["train"] == 100 and meta.splits["test"] == load_meta(digits_data)["splits"]["test"]
    np.testing.assert_array_equal(load_split(tmp_path / "small", "test")[1], load_split(digits_data, "test")[1])


def test_user_image_folder_goes_through_the_same_door(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for label, level in (("dark", 40), ("light", 210)):
        (tmp_path / "mine" / label).mkdir(parents=True)
        for i in range(12):
            size = (20 + i, 16 + i)  # sizes differ: prepare resizes
            pixels = np.clip(rng.normal(level, 10, (*size[::-1], 3)), 0, 255).astype(np.uint8)
            fmt = "PNG" if i % 2 else "JPEG"
            Image.fromarray(pixels).save(tmp_path / "mine" / label / f"{i}.{fmt.lower()}", fmt)
    (tmp_path / "mine" / "dark" / "notes.txt").write_text("ignored")
    raw = ingest_images(tmp_path / "mine", "mine", tmp_path / "raw")
    assert not (raw / "dark" / "notes.txt").exists()
    cfg = PrepareConfig(dataset="mine", objective="multiclass", image_size=16, val_size=0.25, test_size=0.25)
    meta = prepare(tmp_path / "raw", tmp_path / "data", cfg, "mine")
    assert meta.classes == ["dark", "light"] and meta.input.shape == [None, 3, 16, 16]
    assert sum(meta.splits.values()) == 24
    with pytest.raises(DataError, match="one sub-folder"):
        ingest_images(tmp_path / "mine" / "dark", "bad", tmp_path / "raw")


# --- model ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"padding": "same", "stride": 1},
        {"padding": "valid", "pool": "avg", "convs_per_block": 1},
        {"padding": 1, "stride": 2, "pool": "none", "global_pool": "flatten", "head": [32]},
        {"residual": True, "global_pool": "max", "dropout": 0.2, "batch_norm": False},
    ],
)
def test_cnn_shapes_and_summary(kwargs: dict) -> None:
    net = build_model("cnn", in_channels=1, image_size=(28, 28), out_features=10, channels=[8, 16], **kwargs)
    assert net(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    summary = summarize(net, [None, 1, 28, 28])
    assert "Conv2d" in summary and f"total parameters {sum(p.numel() for p in net.parameters()):,d}" in summary


def test_cnn_config_is_checked_with_field_names() -> None:
    cfg = TrainConfig.model_validate({"model": {"name": "cnn", "channels": [8], "padding": 2}})
    assert cfg.model.padding == 2
    with pytest.raises(ConfigError, match="train.t.model.hidden"):
        validate(TrainConfig, {"model": {"name": "cnn", "hidden": [8]}}, "train.t")
    with pytest.raises(ConfigError, match="odd kernel"):
        validate(TrainConfig, {"model": {"name": "cnn", "kernel": 4}}, "train.t")
    with pytest.raises(ConfigError, match="batch_size 1"):
        validate(TrainConfig, {"model": {"name": "cnn"}, "batch_size": 1}, "train.t")


def test_train_help_lists_every_model_choice() -> None:
    from typer.testing import CliRunner

    from pipelines.cli import app

    text = CliRunner().invoke(app, ["train", "--help"], terminal_width=200).output
    for needle in ("model with name=cnn", "model.channels", "model.residual", "init_from", "transfer"):
        assert needle in text, needle


# --- augmentation ---------------------------------------------------------------------------------------


def test_policy_and_preview(digits_data: Path, tmp_path: Path) -> None:
    cfg = AugmentConfig(rotation=15, translate=0.1, noise_std=0.1, erasing=0.2, preview=16)
    policy = augment(digits_data, tmp_path, cfg, "digits")
    assert [op["op"] for op in policy["ops"]] == ["RandomAffine", "GaussianNoise", "RandomErasing"]
    assert json.loads((tmp_path / "augment.json").read_text()) == policy
    assert Image.open(tmp_path / "preview.png").size[0] > 8 * 8
    x = torch.as_tensor(load_split(digits_data, "train")[0][:64])
    out = build_transform(policy)(x)
    assert out.shape == x.shape and not torch.equal(out, x)
    with pytest.raises(ConfigError, match="colour_jitter: needs RGB"):
        augment(digits_data, tmp_path, AugmentConfig(colour_jitter=0.2), "digits")


def test_tabular_tasks_get_an_empty_policy(tmp_path: Path) -> None:
    ingest("wine", tmp_path / "raw")
    prepare(tmp_path / "raw", tmp_path / "data", PrepareConfig(dataset="wine", objective="multiclass"), "w")
    assert augment(tmp_path / "data", tmp_path / "aug", AugmentConfig(), "w")["ops"] == []
    assert not (tmp_path / "aug" / "preview.png").exists()
    with pytest.raises(ConfigError, match="needs an image task"):
        augment(tmp_path / "data", tmp_path / "aug", AugmentConfig(rotation=10), "w")


def _rotated(x: np.ndarray, degrees: float, fill: float, seed: int = 0) -> torch.Tensor:
    """Each test image turned by +-degrees (the sign drawn per image)."""
    from torchvision.transforms.v2 import functional as F

    signs = np.random.default_rng(seed).choice([-1, 1], len(x))
    turned = [F.rotate(torch.as_tensor(img), float(s * degrees), fill=[fill]) for img, s in zip(x, signs, strict=True)]
    return torch.stack(turned)


def test_rotation_augmentation_keeps_accuracy_on_rotated_digits(digits_data: Path, tmp_path: Path) -> None:
    """The course's point: a CNN is not rotation invariant by itself; augmentation teaches it."""
    meta = load_meta(digits_data)
    fill = -meta.preprocessing["mean"][0] / meta.preprocessing["std"][0]
    x_test, y_test = load_split(digits_data, "test")
    rotated = _rotated(x_test, 35, fill)
    base = {"model": {"name": "cnn", "channels": [32, 64]}, "epochs": 25, "batch_size": 64, "lr": 0.003}
    base |= {"early_stopping": {"enabled": False}, "gradients": {"track": False}, "optimizer": "adamw"}
    accuracy = {}
    for name, policy in (("plain", AugmentConfig()), ("rotation", AugmentConfig(rotation=40, preview=0))):
        augment(digits_data, tmp_path / name / "augment", policy, "digits")
        train(
            digits_data,
            tmp_path / name,
            TrainConfig.model_validate(base),
            "digits",
            progress=False,
            augment_dir=tmp_path / name / "augment",
        )
        model, _ = load_trained(tmp_path / name)
        with torch.no_grad():
            accuracy[name] = float((model(rotated).argmax(1).numpy() == y_test).mean())
    print(f"accuracy on test digits rotated by +-35 degrees: {accuracy}")
    assert accuracy["rotation"] >= accuracy["plain"] + 0.15, accuracy


# --- transfer learning ----------------------------------------------------------------------------------


def _cfg(**kw: object) -> TrainConfig:
    base = {"model": {"name": "cnn", "channels": [8, 16]}, "epochs": 2, "early_stopping": {"enabled": False}}
    return TrainConfig.model_validate({**base, **kw})


def test_transfer_from_registered_model_and_feature_extractor(
    digits_artifacts: Path, digits_data: Path, tmp_path: Path
) -> None:
    """models:/digits@champion -> the checkpoint.pt train logged in that run; the frozen backbone stays put."""
    registered = PARAMS["train"]["digits"]["model"]
    cfg = _cfg(model=registered, init_from="models:/digits@champion", transfer="feature_extractor", epochs=2)
    train(digits_data, tmp_path, cfg, "digits", progress=False)
    source, _ = load_trained(digits_artifacts)
    tuned, _ = load_trained(tmp_path)
    src, new = source.state_dict(), tuned.state_dict()
    backbone = [k for k in src if k.startswith("backbone.")]
    assert backbone and all(torch.equal(src[k], new[k]) for k in backbone)  # weights and BN statistics
    assert not torch.equal(src["head.0.weight"], new["head.0.weight"])


def test_finetune_from_checkpoint_path_with_lower_backbone_lr(digits_data: Path, tmp_path: Path) -> None:
    train(digits_data, tmp_path / "a", _cfg(), "digits", progress=False)
    cfg = _cfg(init_from=str(tmp_path / "a" / "checkpoint.pt"), backbone_lr_scale=0.1, scheduler={"name": "onecycle"})
    train(digits_data, tmp_path / "b", cfg, "digits", progress=False)
    with pytest.raises(TransferError, match="no backbone weights match"):
        train(
            digits_data,
            tmp_path / "c",
            _cfg(model={"name": "cnn", "channels": [4]}, init_from=cfg.init_from),
            "digits",
            progress=False,
        )


def test_torchvision_weights_from_the_local_cache_only(
    digits_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cfg = _cfg(model={"name": "torchvision", "arch": "resnet18"}, init_from="torchvision:resnet18", epochs=1)
    with pytest.raises(TransferError, match="not in the local torch cache.*weights='DEFAULT'"):
        train(digits_data, tmp_path / "a", cfg, "digits", progress=False)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), cached)  # stands in for the real download
    train(
        digits_data, tmp_path / "b", cfg.model_copy(update={"transfer": "feature_extractor"}), "digits", progress=False
    )
    model, _ = load_trained(tmp_path / "b")
    assert torch.equal(model.backbone.conv1.weight, reference.conv1.weight)
    with pytest.raises(ConfigError, match="needs model"):
        validate(TrainConfig, {"init_from": "torchvision:resnet18"}, "train.t")


# --- evaluation and export ------------------------------------------------------------------------------


def test_evaluation_metrics_and_plots(digits_artifacts: Path) -> None:
    root = digits_artifacts.parents[1]
    metrics = json.loads((root / "metrics" / "digits.json").read_text())
    assert {"accuracy", "macro_f1", "log_loss", "accuracy/0", "accuracy/9"} <= set(metrics)
    assert metrics["accuracy"] >= 0.9, metrics
    for plot in ("confusion_matrix.png", "worst_misclassified.png", "learning_curves.png"):
        assert (root / "plots" / "digits" / plot).is_file(), plot


@pytest.mark.parametrize("batch", [1, 5, 300])
def test_cnn_onnx_dynamic_batch_parity(digits_artifacts: Path, batch: int) -> None:
    info = json.loads((digits_artifacts / "export.json").read_text())
    assert info["parity_max_abs_diff"] <= 1e-4 and info["inputs"][0]["shape"][1:] == [1, 8, 8]
    model, meta = load_trained(digits_artifacts)
    x, _ = load_split(digits_artifacts / "data", "test")
    x = np.resize(x, (batch, *x.shape[1:])).astype(np.float32)
    with torch.no_grad():
        expected = OutputHead(model, meta)(torch.as_tensor(x)).numpy()
    got = run_onnx(digits_artifacts / "model.onnx", {"image": x})[0]
    assert got.shape == (batch, 10) and np.max(np.abs(got - expected)) <= 1e-4
