"""The ImageNet transfer study end to end on sklearn's digits (tiny budgets): metrics and plot written, the
fine-tuned EfficientNet-Lite0 learns, and its registered ONNX graph takes raw pixels and matches PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from components.experiments.transfer_imagenet import ImageNetTransferConfig, transfer_imagenet

pytestmark = pytest.mark.slow  # about 45 s: every variant of the study trained

QUICK = {"optimizer": "adamw", "lr": 0.01, "batch_size": 10, "epochs": 5, "scheduler": {"name": "onecycle"}}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from components.data.ingest import ingest

    root = tmp_path_factory.mktemp("transfer-imagenet")
    ingest("digits", root / "raw")
    reference = root / "full.json"
    reference.write_text(json.dumps({"accuracy": 0.97}))
    cfg = ImageNetTransferConfig(
        dataset="digits",
        per_class=[10, 3],
        every_budget=False,
        val_size=0.1,
        test_size=0.2,
        model={"size": 32},
        train={**QUICK, "early_stopping": {"enabled": False}, "gradients": {"track": False}},
        reference_metrics=str(reference),
    )
    transfer_imagenet(root / "raw", root / "art", root / "metrics.json", root / "plot.png", cfg)
    return root


def test_study_writes_every_variant_per_budget_and_the_plot(study: Path) -> None:
    results = json.loads((study / "metrics.json").read_text())
    assert set(results["feature_extractor"]) == {"3", "10"}  # the cheap variant at every budget
    assert set(results["finetune"]) == set(results["scratch"]) == {"10"}  # every_budget: false
    assert results["reference"]["accuracy"] == 0.97 and results["onnx_parity_max_abs_diff"] <= 1e-4
    assert (study / "plot.png").stat().st_size > 10_000


def test_imagenet_variants_learn_from_ten_images_per_class(study: Path) -> None:
    results = json.loads((study / "metrics.json").read_text())
    # 10 classes: chance is 0.1; 100 training images, 5 epochs
    assert results["finetune"]["10"] > 0.4 and results["feature_extractor"]["10"] > 0.4
    assert results["feature_extractor"]["10"] > results["feature_extractor"]["3"]


def test_exported_graph_takes_raw_pixels_and_matches_pytorch(study: Path) -> None:
    import onnxruntime as ort

    from components.data.splits import load_split
    from components.train.checkpoint import load_trained

    model, meta = load_trained(study / "art/finetune_10")
    assert meta.input.shape == [None, 1, 8, 8]  # the stored images: upsampling happens inside the graph
    with np.load(study / "art/data/test.npz") as split:
        raw = split["x"][:16].astype(np.float32)  # 0..255, as the image family sends them
    x, _ = load_split(study / "art/data", "test")
    with torch.no_grad():
        expected = torch.softmax(model(torch.as_tensor(x[:16])), 1).numpy()
    session = ort.InferenceSession(str(study / "art/model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {meta.input.name: raw})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)
    registration = json.loads((study / "art/registration.json").read_text())
    assert registration["model"] == "fashion_transfer" and registration["registered"]
