"""A command whose optional dependency is not installed names the extra that brings it, in one line."""

from __future__ import annotations

import sys

import pytest

from pipelines.cli import main


def test_missing_kubeflow_sdk_names_the_extra(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "kfp", None)  # import kfp -> ModuleNotFoundError, as without the extra
    monkeypatch.setattr(sys, "argv", ["dlpipe", "pipeline", "compile", "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 2
    assert "pip install 'dlpipe[kubeflow]'" in capsys.readouterr().err
