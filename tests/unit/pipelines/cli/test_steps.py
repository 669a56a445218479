"""The step commands' help."""

from __future__ import annotations


def test_train_help_lists_every_model_choice() -> None:
    from typer.testing import CliRunner

    from pipelines.cli import app

    text = CliRunner().invoke(app, ["train", "--help"], terminal_width=200).output
    for needle in ("model with name=cnn", "model.channels", "model.residual", "init_from", "transfer"):
        assert needle in text, needle
