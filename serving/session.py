"""ONNX Runtime sessions for serving: execution providers chosen explicitly (CUDA only where a GPU is really
usable), intra-op threads that fit the CPUs this process may use (its affinity mask capped by a cgroup v2 CPU
quota), and graph input/output names checked against meta.json at start-up.

ONNX Runtime is imported inside the functions that need it; torch never is.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path
from typing import Any

from serving.bundle import Bundle, open_graph

log = logging.getLogger(__name__)

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2 CPU quota: "<quota> <period>" or "max <period>"
NVIDIA_DEVICES = Path("/dev/nvidia[0-9]*")  # a GPU's device node (the NVIDIA container toolkit mounts them)


def available_cores() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (a container's `--cpus`)."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = CPU_MAX.read_text().split()
    except (OSError, ValueError):
        return cores
    return cores if quota == "max" else max(1, min(cores, int(quota) // int(period)))


def ort_threads(workers: int = 1) -> int:
    """ONNX Runtime intra-op threads per process: $DLPIPE_ORT_THREADS, else half the usable cores shared by
    `workers` processes (at least 1, at most 4). The other half serves HTTP and JSON, which costs more than
    these small models; more threads than that only add synchronisation to batches this size."""
    return int(os.environ.get("DLPIPE_ORT_THREADS") or min(4, max(1, available_cores() // (2 * workers))))


def cuda_devices() -> int:
    """GPUs the NVIDIA driver reports (cuInit + cuDeviceGetCount through libcuda), 0 without a driver or device."""
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


def choose_providers() -> list[str]:
    """CUDA only when a GPU is really usable: onnxruntime-gpu lists CUDA even without one, then falls back
    noisily. The driver is asked directly (no torch: serving carries no training stack), only where an NVIDIA
    device node exists; ONNX Runtime's own preload_dlls then loads the CUDA and cuDNN libraries of the nvidia-*
    wheels, which it needs before a CUDA session opens."""
    import onnxruntime as ort

    device_node = any(NVIDIA_DEVICES.parent.glob(NVIDIA_DEVICES.name))
    if CUDA in ort.get_available_providers() and device_node and cuda_devices() > 0:
        ort.preload_dlls(directory="")
        return [CUDA, CPU]
    return [CPU]


def make_session(bundle: Bundle, threads: int | None = None, output: str | None = None) -> Any:
    """An InferenceSession whose input/output names are checked against meta.json at start-up.

    `threads` defaults to `ort_threads()`. `output` opens the bundle's graph of that name instead of model.onnx
    (attention, embeddings).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or ort_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    providers = choose_providers()
    graph = bundle.onnx if output is None else (bundle.files or {}).get(f"{output}.onnx")
    if graph is None:
        raise ValueError(f"{bundle.source}: no {output}.onnx in this bundle; export the model again")
    session = open_graph(graph, f"{output or 'model'}.onnx", bundle.source, opts, providers)
    names = {v.name for v in session.get_inputs()}, {v.name for v in session.get_outputs()}
    wanted = bundle.meta.input.name, output or bundle.meta.output.name
    if wanted[0] not in names[0] or wanted[1] not in names[1]:
        raise ValueError(f"{bundle.source}: ONNX graph has inputs {names[0]}, outputs {names[1]}; meta wants {wanted}")
    log.info("ONNX Runtime session on %s (asked for %s)", session.get_providers(), providers)
    return session
