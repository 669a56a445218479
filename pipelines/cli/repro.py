"""`dlpipe repro`: `dvc repro` of every stage, independent lanes side by side (pipelines/repro.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.app import app


@app.command()
def repro(
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=0, help="lanes side by side (0: half the cores, at least 2)")
    ] = 0,
    logs: Annotated[Path, typer.Option(help="each lane's DVC output and stage_times.json")] = Path("build/repro"),
) -> None:
    """Reproduce the whole DVC pipeline like `dvc repro`, with independent parts running side by side.

    Each task's stages (with the experiments that read them) form a lane; `--jobs` workers with cores/jobs torch
    threads each take the lanes from one queue, the longest first (by the last run's stage times, else a reference
    run's), each worker the next lane as soon as it is free, and run each as one `dvc repro` of its stages. The
    result is the same dvc.lock as a plain `dvc repro`; a failed lane stops the others and what finished stays
    recorded. Prints per-stage wall times, and the cores' speed before and after (a slow hour of a shared machine
    makes every stage slower)."""
    from pipelines.machine import describe
    from pipelines.repro import reproduce

    jobs = jobs or max(2, (os.cpu_count() or 1) // 2)
    report = reproduce(jobs, logs, say=typer.echo)
    slowest = sorted(report["stages"].items(), key=lambda kv: -kv[1])
    typer.echo(f"\nall stages in {report['wall_s']:.0f} s, {jobs} lanes at a time; the slowest stages:")
    for name, seconds in slowest[:12]:
        typer.echo(f"  {seconds:7.1f} s  {name}")
    typer.echo(f"every stage's time: {logs / 'stage_times.json'}")
    speeds = report["machine"]
    typer.echo(f"machine, before and after: {describe(speeds['speed_before'], speeds['speed_after'])}")
