"""Building a pipeline: bad cluster settings fail before compiling."""

from __future__ import annotations

import copy

import pytest

from components.config import ConfigError


def test_bad_cluster_settings_fail_at_compile_time(params: dict) -> None:
    from pipelines.build import build_pipeline

    bad = copy.deepcopy(params)
    bad["kubeflow"] = {"tabular": {"train": {"cpu_request": "two"}}}
    with pytest.raises(ConfigError, match=r"kubeflow\.tabular\.train\.cpu_request"):
        build_pipeline("tabular", bad)
