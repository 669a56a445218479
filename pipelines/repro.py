"""`dvc repro` in parallel lanes: the same stages, the same dvc.lock, several at a time.

A lane is one weakly connected part of DVC's stage graph: a task's seven stages plus any experiment that
reads them (fashion's stages and transfer_imagenet, say). Lanes share no stage and no output, so they can run
side by side. They are packed into `jobs` groups, and each group runs as one `dvc --wait-for-lock repro
--single-item <its lanes' stages, lane after lane>` (through pipelines/dvclock.py, which makes DVC's update of
dvc.lock after each stage ~2 s shorter here and forks each `dlpipe` command from a process that imported torch and
MLflow once, pipelines/stagefork.py). DVC keeps that safe by itself: its repository lock is held only while a
stage's state is checked and dvc.lock is written (it is released while the stage's command runs; --wait-for-lock
queues the others), and its per-path read/write locks refuse two writers of one output.

Each group gets `cores // jobs` torch threads (OMP_NUM_THREADS), so groups never oversubscribe the cores: a
stage's start-up (DVC's checks, 1-2 s) runs on one core, so one-thread groups keep every core busy where one
two-thread `dvc repro` leaves one idle between and inside its stages.

Packing (LPT scheduling: the longest lane first, each onto the group with the least work so far) uses each
stage's seconds in the last run's stage_times.json, else in pipelines/stage_times.json (a reference run on 2 cores,
committed as pytest-split commits its durations); a stage with no figure counts as the mean of those known (1 s
when none is). Why groups and this order, measured in one 2-core `make run` (1,747 s of stage time, 874 s at best):
one `dvc repro` per lane in dvc.yaml's order took 937 s. The decoder's 3-minute lane started last and ran alone,
a core idle; and each of the 13 lanes paid for a new DVC process and a stage server's imports (torch, MLflow, ONNX,
scikit-learn: 5-8 s, in its first stage) where two groups pay twice.

Each lane's output goes to `<log_dir>/<lane>.log`; the console gets one line per stage started and a table
of per-stage wall times (from DVC's "Running stage" lines), also written to `<log_dir>/stage_times.json`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from components.core.errors import DlpipeError
from pipelines import machine

RUNNING = re.compile(r"Running stage '([^']+)'")
REFERENCE_TIMES = Path(__file__).with_name("stage_times.json")  # seconds per stage of a reference `make run`


class ReproError(DlpipeError):
    """A lane's `dvc repro` failed; its log says why."""


@dataclass
class Lane:
    name: str  # the task its stages belong to, or the experiment it is
    stages: list[str]  # every stage of the lane, each after the stages it depends on
    started: dict[str, float] = field(default_factory=dict)  # stage -> when DVC said it started running it


def lanes(root: Path = Path(".")) -> list[Lane]:
    """The weakly connected parts of the DVC pipeline in `root`, data sources (.dvc files) left out: every lane
    reads them, and `dvc repro` of a data source would lock it for writing. `dlpipe data pull` checks them."""
    import networkx as nx
    from dvc.repo import Repo

    with contextlib.chdir(root), Repo(".") as repo:  # stage names relative to root, as the lanes' dvc runs see them
        graph = repo.index.graph  # an edge goes from a stage to a stage it depends on
        order = {stage: i for i, stage in enumerate(repo.index.stages)}
        commands = graph.subgraph([s for s in graph if not s.is_data_source])
        parts = sorted(nx.weakly_connected_components(commands), key=lambda part: min(order[s] for s in part))
        found = []
        for part in parts:
            ordered = [s.addressing for s in nx.dfs_postorder_nodes(commands.subgraph(part))]  # dependencies first
            last = [s.addressing for s in sorted(part, key=order.__getitem__) if commands.in_degree(s) == 0]
            task = next((n.partition("@")[2] for n in last if "@" in n), last[0])
            found.append(Lane(task, ordered))
    return sorted(found, key=lambda lane: -len(lane.stages))  # stable: dvc.yaml's order among equals


def known_times(*reports: Path) -> dict[str, float]:
    """Seconds per stage from `dlpipe repro` reports (stage_times.json), a later report's figure winning; a report
    that is missing or unreadable adds nothing."""
    times: dict[str, float] = {}
    for path in reports:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
            times |= {str(name): float(s) for name, s in json.loads(path.read_text(encoding="utf-8"))["stages"].items()}
    return times


def pack(found: list[Lane], jobs: int, times: dict[str, float]) -> list[list[Lane]]:
    """`found` in at most `jobs` groups of about equal known seconds: the longest lane first, each onto the group
    with the least so far (LPT). A stage with no figure counts as the mean known one (1 s when none is known)."""
    unknown = sum(times.values()) / len(times) if times else 1.0
    cost = {lane.name: sum(times.get(stage, unknown) for stage in lane.stages) for lane in found}
    groups: list[list[Lane]] = [[] for _ in range(min(jobs, len(found)))]
    load = [0.0] * len(groups)
    for lane in sorted(found, key=lambda lane: -cost[lane.name]):  # stable: lanes() order among equals
        least = load.index(min(load))
        groups[least].append(lane)
        load[least] += cost[lane.name]
    return groups


def lane_env(jobs: int, cores: int | None = None) -> dict[str, str]:
    """The environment of each group of lanes: `cores // jobs` threads for torch, unless the caller chose a number."""
    threads = max(1, (cores or os.cpu_count() or 1) // jobs)
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, str(threads))
    return env


class _Lanes:
    """The groups' `dvc repro` processes: started unless a lane already failed, all stopped when one fails."""

    def __init__(self, root: Path, log_dir: Path, env: dict[str, str], say: Callable[[str], None]) -> None:
        self.root, self.log_dir, self.env, self.say = root, log_dir, env, say
        self.procs: list[subprocess.Popen] = []
        self.guard = threading.Lock()
        self.failed = False

    def run(self, group: list[Lane]) -> None:
        """One `dvc repro` of the group's lanes, lane after lane; each lane's lines go to its own log."""
        lane_of = {stage: lane for lane in group for stage in lane.stages}
        # --single-item: these stages only, in this order (each still skipped when unchanged): not the data sources
        cmd = [sys.executable, "-m", "pipelines.dvclock", "--wait-for-lock", "repro", "--single-item"]
        cmd += [stage for lane in group for stage in lane.stages]
        with self.guard:
            if self.failed:
                return
            proc = subprocess.Popen(  # its own process group: stopping the lane stops the stage's command too
                cmd, cwd=self.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env,
                start_new_session=True,
            )  # fmt: skip
            self.procs.append(proc)
        lane = group[0]
        out = self.log(lane).open("w", encoding="utf-8")
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if match := RUNNING.search(line):
                    now, stage = time.monotonic(), match.group(1)
                    if lane_of.get(stage, lane) is not lane:  # the next lane of the group
                        lane.started["(end)"] = now
                        out.close()
                        lane = lane_of[stage]
                        out = self.log(lane).open("w", encoding="utf-8")
                    lane.started[stage] = now
                    self.say(f"[{lane.name}] {stage}")
                out.write(line)
                out.flush()
            code = proc.wait()
        finally:
            out.close()
        lane.started["(end)"] = time.monotonic()
        if code != 0 and not self.failed:
            self.stop()
            raise ReproError(f"lane {lane.name!r} failed (its `dvc repro` exited {code}); its output: {self.log(lane)}")

    def log(self, lane: Lane) -> Path:
        return self.log_dir / f"{lane.name}.log"

    def stop(self) -> None:
        """Stop every running group and its stage's command (SIGTERM to the process group; dvc.lock keeps every
        stage that had finished)."""
        with self.guard:
            self.failed = True
            for proc in self.procs:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGTERM)


def stage_times(done: list[Lane]) -> dict[str, float]:
    """Seconds from each stage's start to the next one's in the same lane (the last one: to the lane's end)."""
    times: dict[str, float] = {}
    for lane in done:
        marks = sorted(lane.started.items(), key=lambda kv: kv[1])
        for (name, t0), (_, t1) in zip(marks, marks[1:], strict=False):
            times[name] = round(t1 - t0, 1)
    return times


def reproduce(jobs: int, log_dir: Path, root: Path = Path("."), say: Callable[[str], None] = print) -> dict:
    """Run every lane of the pipeline in `root`, packed into `jobs` groups side by side; return the wall time and
    per-stage times.

    The first failing lane stops the others (its error is raised once they have stopped); what DVC had
    already recorded in dvc.lock stays, so the next run resumes from there."""
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    log_dir.mkdir(parents=True, exist_ok=True)
    todo = lanes(root)
    groups = pack(todo, jobs, known_times(REFERENCE_TIMES, log_dir / "stage_times.json"))
    env = lane_env(jobs)
    threads = env["OMP_NUM_THREADS"]
    say(f"{len(todo)} lanes in {len(groups)} groups side by side, {threads} torch thread(s) each; logs in {log_dir}/")
    runner = _Lanes(root, log_dir, env, say)
    before = machine.speed()  # how fast the cores run now: the same stages take a third longer in a slow hour
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(runner.run, group) for group in groups]
        try:
            for future in futures:
                future.result()
        except BaseException:  # a lane failed, or Ctrl-C: stop the others before raising
            runner.stop()
            raise
    wall = round(time.monotonic() - started, 1)
    speeds = {"cpu": machine.cpu(), "speed_before": before, "speed_after": machine.speed()}
    report = {"jobs": jobs, "wall_s": wall, "stages": stage_times(todo), "machine": speeds}
    (log_dir / "stage_times.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report
