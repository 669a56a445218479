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
    gflops = machine.probe(0.05, threads=1, core=first)
    assert math.isfinite(gflops) and gflops > 0.1  # a 512-cubed product takes 0.27 GFLOP
    assert torch.get_num_threads() == threads and os.sched_getaffinity(0) == cores


def test_the_probe_restores_the_cores_when_it_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    cores = os.sched_getaffinity(0)
    monkeypatch.setattr(torch, "mm", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no product")))
    with pytest.raises(RuntimeError, match="no product"):
        machine.probe(0.05, core=min(cores))
    assert os.sched_getaffinity(0) == cores


def test_speed_probes_each_core_and_all_of_them() -> None:
    measured = machine.speed(0.02)
    assert len(measured["per_core_gflops"]) == min(len(os.sched_getaffinity(0)), machine.MAX_CORES)
    assert all(g > 0 for g in measured["per_core_gflops"]) and measured["all_cores_gflops"] > 0


def test_cpu_names_the_model_and_only_the_flags_that_matter() -> None:
    info = machine.cpu()
    assert info["model"] and info["cores"] == len(os.sched_getaffinity(0))
    assert set(info["flags"]) <= set(machine.FLAGS)


def test_describe_joins_runs_in_order_without_measuring_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "speed", lambda *a: pytest.fail("measured again"))
    line = machine.describe(
        {"per_core_gflops": [80.4, 57.0], "all_cores_gflops": 131.0},
        {"per_core_gflops": [69.0, 70.0], "all_cores_gflops": 138.0},
    )
    assert line.endswith("GFLOP/s 80, 57 on each core, 131 on all then 69, 70 on each core, 138 on all")
