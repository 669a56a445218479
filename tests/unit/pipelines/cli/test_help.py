"""`--help` reads as paragraphs: docstrings wrapped in the source are reflowed, so a terminal wraps them."""

from __future__ import annotations

from typing import Any

import typer
from typer.testing import CliRunner

from pipelines.cli import app


def commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every command under `group` (typer's own click: a group has .commands), with its path of names."""
    found = [(path, group)]
    for name, sub in getattr(group, "commands", {}).items():
        found += commands(sub, (*path, name))
    return found


def test_every_help_paragraph_is_one_line() -> None:
    everything = commands(typer.main.get_command(app))
    assert len(everything) > 30  # the steps, data, serve, pipeline and experiment groups are all there
    for path, command in everything:
        shown = (command.help or "").partition("\f")[0]
        for paragraph in shown.split("\n\n"):
            assert "\n" not in paragraph, f"dlpipe {' '.join(path)}: {paragraph[:60]!r}"


def test_a_wide_terminal_shows_a_paragraph_on_one_line() -> None:
    text = CliRunner().invoke(app, ["repro", "--help"], env={"COLUMNS": "300"}).output
    # in the source this sentence breaks after "torch"; the help wraps it only where the terminal ends
    assert "workers with cores/jobs torch threads each take the lanes from one queue" in text
