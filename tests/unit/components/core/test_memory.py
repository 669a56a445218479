"""memory.py: freed buffers are reused, not faulted in again (children and images get it); exits skip the last GC."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from components.core import memory

ROOT = Path(__file__).resolve().parents[4]

# Allocate, touch and free a 64 MiB buffer 20 times (a chunk's activation map in `predict`); print the page
# faults it took and the two variables as the process saw them. Transparent huge pages are off for the process
# (prctl PR_SET_THP_DISABLE): numpy asks for them on large blocks, and whether the kernel grants 2 MiB pages
# depends on how fragmented the machine's memory is at that moment (the 20 fresh maps took 661 faults in one CI
# run, 10,881 in another); with 4 KiB pages the count says how much memory was faulted in afresh: 327,701
# with glibc's defaults against 16,373 retained, here.
WORKLOAD = """
import ctypes, json, os, resource, sys
import numpy as np
from components.core.memory import retain_freed_memory
assert ctypes.CDLL(None).prctl(41, 1, 0, 0, 0) == 0  # PR_SET_THP_DISABLE
took = retain_freed_memory() if sys.argv[1] == "retain" else None
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    np.ones(16 * 2**20, dtype=np.float32).sum()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
env = {k: os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
print(json.dumps({"faults": faults, "took": took, "env": env}))
"""


def _run(mode: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in memory.ENV} | env
    out = subprocess.run(
        [sys.executable, "-c", WORKLOAD, mode], env=clean, cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_freed_buffers_are_reused_instead_of_faulted_in_again() -> None:
    plain, kept = _run("plain"), _run("retain")
    assert kept["took"] is True
    # without it every round maps its buffer afresh (16,384 pages); with it the first round's memory is reused
    assert plain["faults"] > 20 * 16_384 * 0.9
    assert kept["faults"] < plain["faults"] / 5, (plain, kept)


def test_children_inherit_the_settings_and_a_callers_own_value_wins() -> None:
    assert _run("retain")["env"] == memory.ENV  # what kfp.local steps and torchrun workers start with
    own = _run("retain", MALLOC_MMAP_THRESHOLD_="65536")
    assert own["env"]["MALLOC_MMAP_THRESHOLD_"] == "65536"
    assert own["env"]["MALLOC_TRIM_THRESHOLD_"] == memory.ENV["MALLOC_TRIM_THRESHOLD_"]


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu"])
def test_images_set_the_same_values(dockerfile: str) -> None:
    """KFP's executor calls a step's function without the dlpipe CLI: the image's environment must carry them."""
    text = (ROOT / dockerfile).read_text()
    found = dict(re.findall(r"\b(MALLOC_\w+_)=(\d+)", text))
    assert found == memory.ENV


# A probe registered before anything else runs last at exit: what the final collections would still visit then.
EXIT_PROBE = r"""
import atexit, gc, os, sys
HOW = sys.argv[1]
atexit.register(lambda: os.write(1, f"frozen={gc.get_freeze_count()} tracked={len(gc.get_objects())}\n".encode()))
if HOW == "cli":
    from pipelines.cli import main
    sys.argv = ["dlpipe", "--help"]
    main()
elif HOW == "kubeflow":
    from components.core.tracking import for_pipeline_step
    for_pipeline_step("")
atexit.register(lambda: os.write(1, b"a later handler ran\n"))
"""


@pytest.mark.parametrize("how", ["cli", "kubeflow", "neither"])
def test_step_processes_exit_without_the_final_collection(how: str) -> None:
    """`dlpipe` commands and Kubeflow steps freeze what is alive once every other atexit handler has run."""
    out = subprocess.run([sys.executable, "-c", EXIT_PROBE, how], cwd=ROOT, capture_output=True, text=True).stdout
    probe = dict(re.findall(r"(frozen|tracked)=(\d+)", out))
    if how == "neither":
        assert probe["frozen"] == "0" and int(probe["tracked"]) > 1000
        return
    assert int(probe["frozen"]) > 1000 and probe["tracked"] == "0", out
    if how == "kubeflow":
        assert out.index("a later handler ran") < out.index("frozen=")
