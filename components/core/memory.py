"""A step process's memory: freed heap memory stays for the next allocation, and the exit frees nothing by hand.

Training and chunked inference (components/train/batches.py `predict`: 1,024 images at a time) allocate and free the
same large activation buffers over and over. glibc's malloc serves a block above its mmap threshold (adaptive,
at most 32 MiB) with a fresh mmap and unmaps it on free, so each chunk faults its buffers in again, page by page,
and the kernel zeroes every page: `dlpipe evaluate fashion` on one thread made 4.2 million page faults and spent
8.3 s of its 23.5 s in the kernel. With glibc's mmap and trim thresholds at 1 GiB those blocks are reused from the
heap: 0.28 million faults, 1.0 s in the kernel, 16.8 s in all (means of 3, interleaved). PyTorch's CPU tuning
guide makes the same point and swaps the allocator (jemalloc, tcmalloc); these are glibc's own settings
(mallopt(3)), so nothing has to be installed. The cost: a process keeps its peak heap until it exits, which a step
or a test process does soon anyway.

Every `dlpipe` command calls `retain_freed_memory()` first (pipelines/cli), so do the tests (tests/conftest.py);
the images set the same two variables (Dockerfile), which is how KFP's executor in a container gets them.

At exit the interpreter clears every module and runs its garbage collector over what is left: a train step holds
some 580,000 tracked objects (torch, MLflow, SQLAlchemy, pydantic) and spent 1.9 s between its last line and its
exit, 0.3 s with `skip_final_collection()`, which freezes them first (gc.freeze: the collector no longer visits
them; the kernel takes the memory back when the process ends). A run starts some 90 step processes, the tests
as many again. What still runs at exit does: atexit handlers (MLflow's flush of queued logging, temporary folders'
removal), standard streams' flush, files closed by their `with` blocks long before.
"""

from __future__ import annotations

import atexit
import ctypes
import gc
import os
import sys

THRESHOLD = 1 << 30  # bytes: blocks up to 1 GiB come from (and go back to) the heap
# glibc's environment spelling of each setting (read once, when a process starts) -> mallopt's parameter (malloc.h)
_MALLOPT = {"MALLOC_MMAP_THRESHOLD_": -3, "MALLOC_TRIM_THRESHOLD_": -1}
ENV = {name: str(THRESHOLD) for name in _MALLOPT}


def retain_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds to `THRESHOLD` in this process, and export them (unless set already)
    to the processes it starts: kfp.local steps, torchrun workers, DataLoader workers. A variable the caller set
    wins; glibc applied it when this process started. True when glibc took both values; False and nothing changed
    in this process off Linux or on another C library (musl's mallopt does nothing)."""
    own = {name for name in ENV if name in os.environ}
    for name, value in ENV.items():
        os.environ.setdefault(name, value)
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(name in own or mallopt(param, THRESHOLD) == 1 for name, param in _MALLOPT.items())


def skip_final_collection() -> None:
    """At exit, after every other atexit handler (the first registered runs last), freeze the objects still alive so
    the interpreter's final collections skip them. For short processes: `dlpipe` commands and Kubeflow steps."""
    atexit.register(gc.freeze)
