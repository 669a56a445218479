"""The machine a timing was taken on, and how fast its cores ran at that moment.

A shared cloud machine's speed moves with the hour: on one 2-core AVX2-only EPYC the same Fashion-MNIST training
took 517 s in one `make run` and 807 s in another, nothing else running (docs/results.md), and at one moment one of
its cores ran a float32 matrix product at 80 GFLOP/s and the other at 57. A wall time alone cannot tell a slower
recipe from a slower hour, so `dlpipe repro` and the benchmarks print `describe()` before and after their work,
and `make test` after the tests: the CPU, the vector instructions that decide its kernels (AVX2 trains in fp32;
AVX512-BF16 or AMX lets `amp: auto` train in bf16), and `speed()`, a matrix product's throughput on each core and
on all of them, taken in about a second. Take it while nothing else runs.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

SIZE = 512  # a 512 x 512 x 512 float32 product: 0.27 GFLOP, 3-6 ms on one core; its operands (3 MB) fit in L3
MAX_CORES = 8  # cores probed one by one (0.3 s each); a bigger machine's others are probed together only
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")  # what decides the kernels PyTorch runs on this CPU


def cpu() -> dict[str, Any]:
    """The CPU's model name (and on Linux its family and model numbers), which of `FLAGS` it has, and the cores this
    process may use."""
    info: dict[str, Any] = {"model": platform.processor() or platform.machine(), "flags": [], "cores": _cores()}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                info["model"] = value.strip()
            elif key.strip() in ("cpu family", "model"):  # a cloud CPU's name can be as short as "AMD EPYC"
                info["family" if key.strip() == "cpu family" else "model_number"] = value.strip()
            elif key.strip() == "flags":
                have = set(value.split())
                info["flags"] = [flag for flag in FLAGS if flag in have]
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


def probe(seconds: float = 0.3, threads: int = 1, core: int | None = None) -> float:
    """GFLOP/s of `SIZE`-cubed float32 matrix products on `threads` torch threads (pinned to `core` when given),
    the median of the products run in about `seconds` after two warm-up products. The process's torch thread count
    and this thread's cores are restored afterwards."""
    import torch

    before, cores = torch.get_num_threads(), _affinity()
    torch.set_num_threads(threads)
    if core is not None:
        os.sched_setaffinity(0, {core})  # this thread only (Linux): with one torch thread, where the product runs
    try:
        gen = torch.Generator().manual_seed(0)
        a, b = torch.randn(SIZE, SIZE, generator=gen), torch.randn(SIZE, SIZE, generator=gen)
        out = torch.empty(SIZE, SIZE)
        for _ in range(2):
            torch.mm(a, b, out=out)
        times: list[float] = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(times) < 5:
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
        if core is not None:
            os.sched_setaffinity(0, cores)
    return 2 * SIZE**3 / sorted(times)[len(times) // 2] / 1e9


def speed(seconds: float = 0.3) -> dict[str, Any]:
    """`probe()` on each core this process may use (the first `MAX_CORES`), one torch thread pinned to it, and on
    all of them at once: {"per_core_gflops": [...], "all_cores_gflops": ...}. The cores of one cloud machine can
    differ: on a 2-core EPYC one ran its products at 80 GFLOP/s while the other, its host core busier, ran at 57."""
    cores = sorted(_affinity())
    per_core = [round(probe(seconds, 1, core), 1) for core in cores[:MAX_CORES]] if cores else [probe(seconds)]
    return {"per_core_gflops": per_core, "all_cores_gflops": round(probe(seconds, _cores()), 1)}


def describe(*measured: dict[str, Any]) -> str:
    """One line: CPU model, its vector flags, cores, and `speed()` results (one taken now unless given; several,
    say before and after a run, are joined by "then")."""
    info = cpu()
    flags = "/".join(info["flags"]) or "no AVX2"
    speeds = " then ".join(
        f"{', '.join(f'{g:.0f}' for g in m['per_core_gflops'])} on each core, {m['all_cores_gflops']:.0f} on all"
        for m in measured or [speed()]
    )
    family = f" family {info['family']} model {info['model_number']}" if "family" in info else ""
    return f"{info['model']}{family} ({flags}, {info['cores']} cores): float32 matrix products, GFLOP/s {speeds}"
