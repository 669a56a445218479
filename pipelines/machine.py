"""The machine a timing was taken on, and how fast its cores ran at that moment.

A shared cloud machine's speed moves with the hour: on one 2-core AVX2-only EPYC the same Fashion-MNIST training
took 517 s in one `make run` and 972 s in another, nothing else running (docs/results.md), and at one moment one of
its cores ran a float32 matrix product at 80 GFLOP/s and the other at 57. A wall time alone cannot tell a slower
recipe from a slower hour, so `dlpipe repro` and the benchmarks print `describe()` before and after their work,
and `make test` after the tests: the CPU, the vector instructions that decide its kernels (AVX2 trains in fp32;
AVX512-BF16 or AMX lets `amp: auto` train in bf16), and `speed()`, a matrix product's throughput on each core and
the speed of a large copy (the memory's), in under a second a core. Take it while nothing else runs.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SIZE = 512  # a 512 x 512 x 512 float32 product: 0.27 GFLOP, 3-6 ms on one core; its operands (3 MB) fit in L3
COPY_MB = 64  # a copy of 64 MB of floats: beyond the caches, so it runs at the memory's speed
MAX_CORES = 8  # cores probed one by one (0.4 s each); a bigger machine's others are not
FLAGS = ("avx2", "avx512_f", "avx512_bf16", "amx_bf16")  # what decides the kernels PyTorch runs on this CPU
NUMBERS = {"cpu family": "family", "model": "model_number"}  # /proc/cpuinfo's keys -> cpu()'s


def cpu() -> dict[str, Any]:
    """The CPU's name and which of `FLAGS` it has, as PyTorch reads them (the same capabilities `amp: auto` decides
    by, components/train/precision.py), the cores this process may use, and on Linux the CPU's family and model
    numbers: a cloud CPU's name can be as short as "AMD EPYC"."""
    import torch

    caps = torch.cpu.get_capabilities()
    info: dict[str, Any] = {"model": caps.get("cpu_name") or platform.machine(), "cores": _cores()}
    info["flags"] = [flag for flag in FLAGS if caps.get(flag)]
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key in NUMBERS and NUMBERS[key] not in info:
                info[NUMBERS[key]] = value
            if not line.strip():  # the first processor's block is enough
                break
    return info


def device_name() -> str:
    """The GPU training would use, else "cpu"."""
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def _affinity() -> set[int]:
    """The cores this thread may run on (empty where the platform does not say: not Linux)."""
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()


def _cores() -> int:
    return len(_affinity()) or os.cpu_count() or 1


def probe(seconds: float = 0.3, core: int | None = None) -> dict[str, float]:
    """On one torch thread (pinned to `core` when given): GFLOP/s of `SIZE`-cubed float32 matrix products, the
    median of those run in about `seconds`, and GB/s read and written by copies of `COPY_MB` of floats, the median of
    `seconds` / 3 of them, each after two warm-up runs. The process's torch threads and this thread's cores are
    restored afterwards."""
    import torch

    before, cores = torch.get_num_threads(), _affinity()
    torch.set_num_threads(1)
    if core is not None:
        os.sched_setaffinity(0, {core})  # this thread only (Linux): with one torch thread, where the work runs
    try:
        gen = torch.Generator().manual_seed(0)
        a, b, out = torch.randn(SIZE, SIZE, generator=gen), torch.randn(SIZE, SIZE, generator=gen), torch.empty(0)
        product = _median_seconds(lambda: torch.mm(a, b, out=out), seconds)
        src = torch.ones(COPY_MB * 2**20 // 4)
        dst = torch.empty_like(src)
        copy = _median_seconds(lambda: dst.copy_(src), seconds / 3)
    finally:
        torch.set_num_threads(before)
        if core is not None:
            os.sched_setaffinity(0, cores)
    return {"gflops": 2 * SIZE**3 / product / 1e9, "copy_gbps": 2 * COPY_MB * 2**20 / copy / 1e9}


def _median_seconds(work: Callable[[], object], seconds: float) -> float:
    for _ in range(2):
        work()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 5:
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def speed(seconds: float = 0.3) -> dict[str, Any]:
    """`probe()` on each core this process may use (the first `MAX_CORES`), one torch thread pinned to it:
    {"per_core_gflops": [...], "per_core_copy_gbps": [...]}. The cores of one cloud machine can differ: on a
    2-core EPYC one ran its products at 80 GFLOP/s while the other, its host core busier, ran at 57. (Not all cores
    at once: one thread that waits for a busy core stalls every product, and such a figure swung from 130 to 17
    GFLOP/s within a minute.) The copies' speed is the memory's, which the machine's neighbours share too."""
    cores = sorted(_affinity())
    found = [probe(seconds, core) for core in cores[:MAX_CORES]] if cores else [probe(seconds)]
    return {
        "per_core_gflops": [round(f["gflops"], 1) for f in found],
        "per_core_copy_gbps": [round(f["copy_gbps"], 1) for f in found],
    }


def describe(*measured: dict[str, Any]) -> str:
    """One line: CPU model, its vector flags, cores, and `speed()` results (one taken now unless given; several,
    say before and after a run, are joined by "then")."""
    info = cpu()
    flags = "/".join(info["flags"]) or "no AVX2"

    def figures(m: dict[str, Any]) -> str:
        gflops = ", ".join(f"{g:.0f}" for g in m["per_core_gflops"])
        return f"{gflops} GFLOP/s (copies {', '.join(f'{g:.0f}' for g in m['per_core_copy_gbps'])} GB/s)"

    family = f" family {info['family']} model {info['model_number']}" if "family" in info else ""
    head = f"{info['model']}{family} ({flags}, {info['cores']} cores)"
    return f"{head}: float32 matrix product per core {' then '.join(figures(m) for m in measured or [speed()])}"
