"""`dvc repro` in parallel lanes: the same stages, the same dvc.lock, several at a time.

A lane is one weakly connected part of DVC's stage graph: a task's seven stages plus any experiment that
reads them (fashion's stages and transfer_imagenet, say). Lanes share no stage and no output, so `jobs`
of them run side by side, each as its own `dvc --wait-for-lock repro --single-item <the lane's stages>` (through
pipelines/dvclock.py, which makes DVC's update of dvc.lock after each stage ~2 s shorter here and forks each
`dlpipe` command from a process that imported torch and MLflow once, pipelines/stagefork.py). DVC keeps
that safe by itself: its repository lock is held only while a stage's state is checked and dvc.lock is
written (it is released while the stage's command runs; --wait-for-lock queues the others), and its
per-path read/write locks refuse two writers of one output.

Each lane gets `cores // jobs` torch threads (OMP_NUM_THREADS), so lanes never oversubscribe the cores: a
lane's start-up (Python imports, DVC's checks, 2-9 s a stage) runs on one core, so one-thread lanes keep every
core busy (96% of a 2-core `make run`) where one two-thread `dvc repro` leaves one idle between and inside its
stages. Lanes start longest first (LPT scheduling), by their stages' seconds in the last run's stage_times.json, else
in pipelines/stage_times.json (a reference `make run` on 2 cores, committed as pytest-split commits its durations):
in dvc.yaml's order the decoder's 3-minute lane started last and ran alone at the end, a core idle (937 s where the
stages' 1,747 s on 2 cores allow 874). Lanes with no known time follow, most stages first, then in dvc.yaml's order.

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
    """`found` in order of their stages' known seconds, most first; lanes with none known keep their order, last."""
    return sorted(found, key=lambda lane: -sum(times.get(stage, 0.0) for stage in lane.stages))


def lane_env(jobs: int, cores: int | None = None) -> dict[str, str]:
    """The environment of each lane: `cores // jobs` threads for torch, unless the caller chose a number."""
    threads = max(1, (cores or os.cpu_count() or 1) // jobs)
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, str(threads))
    return env


class _Lanes:
    """The lanes' `dvc repro` processes: started unless a lane already failed, all stopped when one fails."""

    def __init__(self, root: Path, env: dict[str, str], say: Callable[[str], None]) -> None:
        self.root, self.env, self.say = root, env, say
        self.procs: list[subprocess.Popen] = []
        self.guard = threading.Lock()
        self.failed = False

    def run(self, lane: Lane, log: Path) -> None:
        # --single-item: these stages only, in this order (each still skipped when unchanged): not the data sources
        cmd = [sys.executable, "-m", "pipelines.dvclock", "--wait-for-lock", "repro", "--single-item", *lane.stages]
        with self.guard:
            if self.failed:
                return
            proc = subprocess.Popen(  # its own process group: stopping the lane stops the stage's command too
                cmd, cwd=self.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env,
                start_new_session=True,
            )  # fmt: skip
            self.procs.append(proc)
        with log.open("w", encoding="utf-8") as out:
            assert proc.stdout is not None
            for line in proc.stdout:
                out.write(line)
                out.flush()
                if match := RUNNING.search(line):
                    lane.started[match.group(1)] = time.monotonic()
                    self.say(f"[{lane.name}] {match.group(1)}")
            code = proc.wait()
        lane.started["(end)"] = time.monotonic()
        if code != 0 and not self.failed:
            self.stop()
            raise ReproError(f"lane {lane.name!r} failed (`{' '.join(cmd)}` exited {code}); its output: {log}")

    def stop(self) -> None:
        """Stop every running lane and its stage's command (SIGTERM to the process group; dvc.lock keeps every
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
    """Run every lane of the pipeline in `root`, `jobs` at a time; return the wall time and per-stage times.

    The first failing lane stops the others (its error is raised once they have stopped); what DVC had
    already recorded in dvc.lock stays, so the next run resumes from there."""
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    log_dir.mkdir(parents=True, exist_ok=True)
    todo = longest_first(lanes(root), known_times(REFERENCE_TIMES, log_dir / "stage_times.json"))
    env = lane_env(jobs)
    say(f"{len(todo)} lanes, {jobs} at a time, {env['OMP_NUM_THREADS']} torch thread(s) each; logs in {log_dir}/")
    runner = _Lanes(root, env, say)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(runner.run, lane, log_dir / f"{lane.name}.log") for lane in todo]
        try:
            for future in futures:
                future.result()
        except BaseException:  # a lane failed, or Ctrl-C: stop the others before raising
            runner.stop()
            raise
    report = {"jobs": jobs, "wall_s": round(time.monotonic() - started, 1), "stages": stage_times(todo)}
    (log_dir / "stage_times.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report
