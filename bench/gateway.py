"""Benchmark: the gateway (every task in one process) against each task's own service, side by side in one run.

Both serve the same local exports (artifacts/<task>, as `make run` leaves them). For each task route, the same
bounded asyncio client (REQUESTS single-item JSON requests, CONCURRENCY in flight, on loopback) runs against
the task's own service and against the gateway's `/<task>/...` route, interleaved; printed: requests/s, p50
and p99 latency, the gateway/own throughput ratio, and the resident memory of each deployment (all its
processes). The gateway is worth having when the ratio is ~1 and its memory is below the sum of the
per-task services'.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {"tabular": "serving.tabular:Tabular", "digits": "serving.image:Image"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(service: str, env: dict[str, str], log: Path) -> Iterator[tuple[str, int]]:
    port = _port()
    cmd = [sys.executable, "-m", "bentoml", "serve", service, "--port", str(port)]
    full_env = os.environ | env | {"BENTOML_DO_NOT_TRACK": "true", "PYTHONPATH": str(ROOT)}
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=out, stderr=out, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"{service} did not start: {log.read_text()[-2000:]}")
        yield url, proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def rss_mib(pid: int) -> float:
    """Resident memory of a process group (the server and its workers), from /proc."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pid:  # process group id
                total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return total / 2**20


async def load(url: str, body: dict, requests: int, concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    queue = iter(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        for _ in queue:
            started = time.perf_counter()
            response = await client.post(url, json=body)
            response.raise_for_status()
            latencies.append(time.perf_counter() - started)

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    ms = sorted(x * 1000 for x in latencies)
    return {"rps": requests / wall, "p50": statistics.median(ms), "p99": ms[int(0.99 * (len(ms) - 1))]}


def bodies(artifacts: Path) -> dict[str, tuple[str, dict]]:
    meta = json.loads((artifacts / "tabular/data/meta.json").read_text())
    record = dict(zip(meta["feature_names"], meta["scaler"]["mean"], strict=True))
    size = json.loads((artifacts / "digits/data/meta.json").read_text())["preprocessing"]["resize"]
    return {"tabular": ("predict", {"records": [record]}), "digits": ("predict", {"pixels": np.zeros(size).tolist()})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=ROOT / "artifacts")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    artifacts = args.artifacts.resolve()
    work = bodies(artifacts)
    with tempfile.TemporaryDirectory() as tmp:
        home = {"BENTOML_HOME": f"{tmp}/bentoml"}
        own: dict[str, dict] = {}
        own_rss = 0.0
        for task, service in SERVICES.items():
            env = home | {"DLPIPE_TASK": task, "DLPIPE_MODEL_DIR": str(artifacts / task)}
            with server(service, env, Path(tmp) / f"{task}.log") as (url, pid):
                route, body = work[task]
                asyncio.run(load(f"{url}/{route}", body, 100, 4))  # warm the connection pool and batching
                own[task] = asyncio.run(load(f"{url}/{route}", body, args.requests, args.concurrency))
                own_rss += rss_mib(pid)
        env = home | {"DLPIPE_TASKS": ",".join(SERVICES), "DLPIPE_MODEL_DIR": str(artifacts)}
        with server("serving.gateway:Gateway", env, Path(tmp) / "gateway.log") as (url, pid):
            gateway = {}
            for task, (route, body) in work.items():
                asyncio.run(load(f"{url}/{task}/{route}", body, 100, 4))
                gateway[task] = asyncio.run(load(f"{url}/{task}/{route}", body, args.requests, args.concurrency))
            gateway_rss = rss_mib(pid)
    print(f"{args.requests} requests at concurrency {args.concurrency}, {os.cpu_count()} CPUs")
    print(f"{'task':8} {'own rps':>8} {'p50':>6} {'p99':>6} | {'gateway rps':>11} {'p50':>6} {'p99':>6} | ratio")
    for task in SERVICES:
        a, b = own[task], gateway[task]
        print(
            f"{task:8} {a['rps']:8.0f} {a['p50']:6.1f} {a['p99']:6.1f} | {b['rps']:11.0f} {b['p50']:6.1f} "
            f"{b['p99']:6.1f} | {b['rps'] / a['rps']:.2f}"
        )
    print(f"resident memory: own services {own_rss:.0f} MiB in total, gateway {gateway_rss:.0f} MiB")


if __name__ == "__main__":
    main()
