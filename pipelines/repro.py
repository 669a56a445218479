"""`dvc repro` in parallel lanes: the same stages, the same dvc.lock, several at a time.

A lane is one weakly connected part of DVC's stage graph: a task's seven stages plus any experiment that
reads them (fashion's stages and transfer_imagenet, say). Lanes share no stage and no output, so they can run
side by side. `jobs` workers take them from one queue, the longest first, each the next lane whenever it is free
(list scheduling), and run each as `dvc --wait-for-lock repro --single-item <the lane's stages>`. A worker is one
`python -m pipelines.dvclock --lanes` process for all its lanes: DVC's update of dvc.lock after each stage ~2 s
shorter there, and each `dlpipe` command forked from a server that imported torch and MLflow once
(pipelines/stagefork.py). DVC keeps that safe by itself: its repository lock is held only while a stage's state is
checked and dvc.lock is written (it is released while the stage's command runs; --wait-for-lock queues the others),
and its per-path read/write locks refuse two writers of one output.

Each worker gets `cores // jobs` torch threads (OMP_NUM_THREADS), so workers never oversubscribe the cores: a
stage's start-up (DVC's checks, 1-2 s) runs on one core, so one-thread workers keep every core busy where one
two-thread `dvc repro` leaves one idle between and inside its stages.

The queue's order comes from each stage's seconds in the last run's stage_times.json, else in
pipelines/stage_times.json (a reference run on 2 cores, committed as pytest-split commits its durations); a stage
with no figure counts as the mean of those known (1 s when none is). Why workers, a queue, and this order, measured
on 2 cores: one `dvc repro` process per lane in dvc.yaml's order took 937 s where 874 s was the best possible (the
decoder's 3-minute lane started last and ran alone, a core idle, and each of the 13 lanes paid for a new DVC
process and a stage server's imports, 5-8 s). Groups fixed in advance by the reference's seconds pay those once
per group, but a slow hour does not slow every stage alike: in two `make run`s the group holding Fashion-MNIST
ran 50-59 s past the other's end, one core idle meanwhile. A worker that is free takes the next lane, so the
cores part within about one short lane of each other whatever the hour.

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
from pipelines.dvclock import LANE_END

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


def longest_first(found: list[Lane], times: dict[str, float]) -> list[Lane]:
    """`found` by known seconds, the longest lane first (lanes() order among equals). A stage with no figure counts
    as the mean known one (1 s when none is known)."""
    unknown = sum(times.values()) / len(times) if times else 1.0
    cost = {lane.name: sum(times.get(stage, unknown) for stage in lane.stages) for lane in found}
    return sorted(found, key=lambda lane: -cost[lane.name])


def lane_env(jobs: int, cores: int | None = None) -> dict[str, str]:
    """The environment of each worker: `cores // jobs` threads for torch, unless the caller chose a number."""
    threads = max(1, (cores or os.cpu_count() or 1) // jobs)
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, str(threads))
    return env


class _Lanes:
    """The workers: each one `python -m pipelines.dvclock --lanes` process that runs the next lane of the queue
    whenever it is free; all are stopped when a lane fails."""

    def __init__(
        self, root: Path, log_dir: Path, env: dict[str, str], say: Callable[[str], None], queue: list[Lane]
    ) -> None:
        self.root, self.log_dir, self.env, self.say = root, log_dir, env, say
        self.queue = list(queue)  # the next lane to run first
        self.procs: list[subprocess.Popen] = []
        self.guard = threading.Lock()
        self.failed = False

    def _next(self) -> Lane | None:
        with self.guard:
            return None if self.failed or not self.queue else self.queue.pop(0)

    def work(self) -> None:
        """One worker: lane after lane from the queue, each one `dvc repro --single-item <its stages>` (these
        stages only, in this order, each still skipped when unchanged: not the data sources), until none is left."""
        cmd = [sys.executable, "-m", "pipelines.dvclock", "--lanes"]
        with self.guard:
            if self.failed:
                return
            proc = subprocess.Popen(  # its own process group: stopping the worker stops the stage's command too
                cmd, cwd=self.root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, env=self.env, start_new_session=True,
            )  # fmt: skip
            self.procs.append(proc)
        try:
            while (lane := self._next()) is not None:
                code = self._run(proc, lane)
                if code != 0:
                    if self.stop():  # the first failure: the one to report
                        raise ReproError(
                            f"lane {lane.name!r} failed (its `dvc repro` exited {code}); its output: {self.log(lane)}"
                        )
                    return
        except BaseException:  # this thread broke (say, a log it could not write): stop, do not wait for the lane
            self.stop()
            raise
        finally:
            with contextlib.suppress(OSError):  # the worker may be gone already
                assert proc.stdin is not None
                proc.stdin.close()
            proc.wait()

    def _run(self, proc: subprocess.Popen, lane: Lane) -> int:
        """`lane` in the worker `proc`; its lines go to its own log. Returns the lane's exit code (the worker's, if
        it ended without finishing the lane)."""
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps(lane.stages) + "\n")
            proc.stdin.flush()
        except OSError:  # the worker is gone (stopped)
            return proc.wait() or 1
        code = None
        with self.log(lane).open("w", encoding="utf-8") as out:
            for line in proc.stdout:
                if line.startswith(LANE_END):
                    code = int(line.split()[1])
                    break
                if match := RUNNING.search(line):
                    lane.started[match.group(1)] = time.monotonic()
                    self.say(f"[{lane.name}] {match.group(1)}")
                out.write(line)
                out.flush()
        lane.started["(end)"] = time.monotonic()
        return (proc.wait() or 1) if code is None else code

    def log(self, lane: Lane) -> Path:
        return self.log_dir / f"{lane.name}.log"

    def stop(self) -> bool:
        """Stop every worker and its stage's command (SIGTERM to the process group; dvc.lock keeps every stage that
        had finished). True for the first call, which names the failure."""
        with self.guard:
            first, self.failed = not self.failed, True
            for proc in self.procs:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGTERM)
        return first


def stage_times(done: list[Lane]) -> dict[str, float]:
    """Seconds from each stage's start to the next one's in the same lane (the last one: to the lane's end)."""
    times: dict[str, float] = {}
    for lane in done:
        marks = sorted(lane.started.items(), key=lambda kv: kv[1])
        for (name, t0), (_, t1) in zip(marks, marks[1:], strict=False):
            times[name] = round(t1 - t0, 1)
    return times


def reproduce(jobs: int, log_dir: Path, root: Path = Path("."), say: Callable[[str], None] = print) -> dict:
    """Run every lane of the pipeline in `root`, `jobs` at a time (each free worker takes the longest lane left);
    return the wall time, per-stage times and the cores' speed before and after.

    The first failing lane stops the others (its error is raised once they have stopped); what DVC had
    already recorded in dvc.lock stays, so the next run resumes from there."""
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    log_dir.mkdir(parents=True, exist_ok=True)
    todo = lanes(root)
    queue = longest_first(todo, known_times(REFERENCE_TIMES, log_dir / "stage_times.json"))
    workers = min(jobs, len(todo))
    env = lane_env(jobs)
    threads = env["OMP_NUM_THREADS"]
    say(f"{len(todo)} lanes, {workers} at a time, {threads} torch thread(s) each; logs in {log_dir}/")
    runner = _Lanes(root, log_dir, env, say, queue)
    before = machine.speed()  # the cores now: a slow hour ran the same stages up to 1.7x as long
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
        futures = [pool.submit(runner.work) for _ in range(workers)]
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
