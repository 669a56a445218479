"""Per-task serving settings and the threads / workers that fit the CPUs this process may use."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from serving import session, settings


def test_settings_per_family_with_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings.for_task("tabular_wine", "tabular").max_batch_size == 1000
    monkeypatch.setenv("DLPIPE_SERVING", '{"tabular": {"max_latency_ms": 20}, "tabular_wine": {"timeout_s": 3}}')
    wine = settings.for_task("tabular_wine", "tabular")
    assert (wine.max_latency_ms, wine.timeout_s) == (20, 3.0)
    assert settings.for_task("tabular", "tabular").timeout_s == 30.0
    monkeypatch.setenv("DLPIPE_SERVING", '{"tabular": {"max_latency": 20}}')
    with pytest.raises(ValueError, match="max_latency"):
        settings.for_task("tabular", "tabular")


def test_ort_threads_and_workers_fit_the_cores(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    monkeypatch.setattr(session, "CPU_MAX", tmp_path / "cpu.max")
    for quota, cores in (("max 100000", affinity), ("50000 100000", 1), ("10000000 100000", affinity)):
        session.CPU_MAX.write_text(quota)
        assert session.available_cores() == cores, quota
    monkeypatch.delenv("DLPIPE_ORT_THREADS", raising=False)
    monkeypatch.delenv("DLPIPE_SERVING", raising=False)
    for cores, threads, threads_of_4 in ((1, 1, 1), (2, 1, 1), (6, 3, 1), (32, 4, 4)):
        monkeypatch.setattr(session, "available_cores", lambda n=cores: n)
        assert (session.ort_threads(), session.ort_threads(workers=4)) == (threads, threads_of_4)
    monkeypatch.setattr(session, "available_cores", lambda: 6)
    workers = {family: settings.for_task(family, family).worker_count() for family in settings.SETTINGS}
    assert workers == {"tabular": 6, "image": 6, "forecast": 6, "text": 6, "decoder": 1, "encoder": 1, "seq2seq": 6}
    monkeypatch.setenv("DLPIPE_SERVING", '{"tabular_wine": {"workers": 2}}')
    assert settings.for_task("tabular_wine", "tabular").worker_count() == 2
    monkeypatch.setenv("DLPIPE_ORT_THREADS", "3")
    assert session.ort_threads() == 3
