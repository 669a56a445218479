"""pipelines/machine.py: the CPU's description and the cores' speed probe, which must leave the process as it was."""

from __future__ import annotations

import math
import os

import pytest
import torch

from pipelines import machine


def test_the_probe_measures_and_restores_threads_and_cores() -> None:
    threads, cores = torch.get_num_threads(), os.sched_getaffinity(0)
    first = min(cores)
    found = machine.probe(0.05, core=first)
    assert math.isfinite(found["gflops"]) and found["gflops"] > 0.1  # a 512-cubed product takes 0.27 GFLOP
    assert math.isfinite(found["copy_gbps"]) and found["copy_gbps"] > 0.1
    assert torch.get_num_threads() == threads and os.sched_getaffinity(0) == cores


def test_the_probe_restores_the_cores_when_it_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    cores = os.sched_getaffinity(0)
    monkeypatch.setattr(torch, "mm", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no product")))
    with pytest.raises(RuntimeError, match="no product"):
        machine.probe(0.05, core=min(cores))
    assert os.sched_getaffinity(0) == cores


def test_speed_probes_each_core() -> None:
    measured = machine.speed(0.02)
    assert len(measured["per_core_gflops"]) == min(len(os.sched_getaffinity(0)), machine.MAX_CORES)
    assert all(g > 0 for g in measured["per_core_gflops"] + measured["per_core_copy_gbps"])


def test_cpu_names_the_model_and_only_the_flags_that_matter() -> None:
    info = machine.cpu()
    assert info["model"] and info["cores"] == len(os.sched_getaffinity(0))
    assert set(info["flags"]) <= set(machine.FLAGS)


def test_describe_joins_runs_in_order_without_measuring_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "speed", lambda *a: pytest.fail("measured again"))
    line = machine.describe(
        {"per_core_gflops": [80.4, 57.0], "per_core_copy_gbps": [11.7, 7.2]},
        {"per_core_gflops": [69.0, 70.0], "per_core_copy_gbps": [8.0, 8.4]},
    )
    assert line.endswith("per core 80, 57 GFLOP/s (copies 12, 7 GB/s) then 69, 70 GFLOP/s (copies 8, 8 GB/s)")
