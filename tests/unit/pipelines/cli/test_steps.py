"""The step commands' help."""

from __future__ import annotations


def test_train_help_lists_every_model_choice() -> None:
    from typer.testing import CliRunner

    from pipelines.cli import app

    text = CliRunner().invoke(app, ["train", "--help"], terminal_width=200).output
    for needle in ("model with name=cnn", "model.channels", "model.residual", "init_from", "transfer"):
        assert needle in text, needle


def test_metrics_prints_tasks_and_each_experiments_variants(tmp_path, monkeypatch) -> None:
    import json

    from typer.testing import CliRunner

    from pipelines.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(
        "prepare: {tabular: {}, digits: {}}\n"
        "experiments: {transfer_imagenet: {}, encoder_finetune: {}, vanishing: {}}\n"
    )
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/tabular.json").write_text(json.dumps({"accuracy": 0.98765}))
    study = {
        "feature_extractor": {"10": 0.574, "100": 0.81, "30": 0.737},
        "reference": {"accuracy": 0.935},  # the full-data model's figure: context, not a variant
        "seconds": {"total": 92.0},
        "onnx_parity_max_abs_diff": 4e-05,
    }
    (tmp_path / "metrics/transfer_imagenet.json").write_text(json.dumps(study))
    finetune = {"minilm": {"accuracy": 0.7868, "f1": 0.76, "train_seconds": 88.6}, "scratch": {"accuracy": 0.6625}}
    (tmp_path / "metrics/encoder_finetune.json").write_text(json.dumps(finetune | {"served": "minilm"}))
    lines = CliRunner().invoke(app, ["metrics"], terminal_width=200).output.splitlines()
    assert lines[0].split() == ["tabular", "accuracy=0.9877"] and lines[1].split() == ["digits", "(not", "run", "yet)"]
    assert lines[2].split()[1:] == ["feature_extractor", "10=0.574", "30=0.737", "100=0.81"]  # sizes in order
    assert lines[3] == "encoder_finetune   minilm accuracy=0.7868 | scratch accuracy=0.6625  [served: minilm]"
    assert lines[4].split() == ["vanishing", "(not", "run", "yet)"]


def test_metrics_names_an_unreadable_file_prints_the_rest_and_exits_2(tmp_path, monkeypatch) -> None:
    """A metrics file cut short (or holding no object) gets a line naming it; the other tasks still print. A task
    the promotion gate held back says so instead of a champion."""
    import json

    from typer.testing import CliRunner

    from pipelines.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("prepare: {tabular: {}, digits: {}, tabular_wine: {}}\n")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/tabular.json").write_text('{"accuracy": 0.98')  # cut short
    (tmp_path / "metrics/digits.json").write_text("[0.99]")
    (tmp_path / "metrics/tabular_wine.json").write_text(json.dumps({"accuracy": 0.9722}))
    held = {"registered": False, "promoted": False, "primary_metric": "accuracy", "min_score": 0.98}
    (tmp_path / "artifacts/tabular_wine").mkdir(parents=True)
    (tmp_path / "artifacts/tabular_wine/registration.json").write_text(json.dumps(held))
    result = CliRunner().invoke(app, ["metrics"], terminal_width=200)
    assert result.exit_code == 2, result.output
    tabular, digits, wine = result.output.splitlines()
    assert tabular.startswith("tabular ") and "metrics/tabular.json is not valid JSON" in tabular
    assert "metrics/digits.json holds list, not an object of figures" in digits
    assert wine.split(maxsplit=1) == [
        "tabular_wine",
        "accuracy=0.9722  [not registered: accuracy below min_score 0.98]",
    ]
