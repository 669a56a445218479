"""Load test on loopback: the real BentoML service vs a naive FastAPI + eager PyTorch server of the same model
(bench/naive_server.py), the same request mix (single rows / single images from the test split, JSON POST
/predict) at the same concurrency for the same duration, one after the other in one run. Goal from the issue:
ours/naive throughput >= 2x and p99 <= 50 ms at concurrency 32 for tabular and a CNN task on 2 cores.

    python bench/serving_load.py                          # tabular and digits, 20 s each, concurrency 32
    python bench/serving_load.py --tasks fashion --seconds 30
    python bench/serving_load.py --soak                   # 20,000 requests at concurrency 64 per task, ours only:
                                                          # zero errors, server RSS growth < 10%

Both servers use artifacts/<task> (checkpoint.pt for the naive one, model.onnx for ours; `make run` makes
them). The client (asyncio + aiohttp, bodies encoded once up front) shares the cores with the server, as the
CPU seconds it reports show: on 2 cores it is a real part of the cost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
import psutil

from bench import servers

JSON = {"Content-Type": "application/json"}
HEADER = "task       server      req/s   p50 ms   p99 ms  errors cpu ms/req  client s"


@dataclass(frozen=True)
class Result:
    ok: int
    errors: Counter
    wall_s: float
    latencies_ms: list[float]
    client_cpu_s: float
    server_cpu_s: float

    @property
    def rps(self) -> float:
        return self.ok / self.wall_s

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


def bodies(model_dir: Path, n: int = 256) -> list[bytes]:
    """Single-row or single-image JSON bodies for POST /predict, from the test split, encoded once."""
    from components.core.contract import load_meta

    meta = load_meta(model_dir / "data")
    with np.load(model_dir / "data" / "test.npz") as data:
        x = data["x"][:n]
    if meta.kind == "tabular":  # the split is scaled: back to raw feature values, as a client sends them
        raw = x * np.asarray(meta.scaler["scale"]) + np.asarray(meta.scaler["mean"])
        names = meta.feature_names
        return [json.dumps({"records": [dict(zip(names, r.tolist(), strict=True))]}).encode() for r in raw]
    return [json.dumps({"images": [{"pixels": img.tolist(), "top_k": 3}]}).encode() for img in x]


async def _load(url: str, payloads: list[bytes], concurrency: int, seconds: float | None, total: int | None):
    latencies: list[float] = []
    errors: Counter = Counter()  # status code or exception name -> count
    counter = itertools.count()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        deadline = time.perf_counter() + (seconds or 1e9)

        async def worker() -> None:
            while (i := next(counter)) < (total or sys.maxsize) and time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    async with session.post(url, data=payloads[i % len(payloads)], headers=JSON) as response:
                        await response.read()
                        status: int | str = response.status
                except (TimeoutError, aiohttp.ClientError) as err:
                    status = type(err).__name__
                if status == 200:
                    latencies.append(1000 * (time.perf_counter() - started))
                else:
                    errors[status] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, errors, time.perf_counter() - started


def load(server: servers.Server, payloads: list[bytes], concurrency: int, seconds=None, total=None) -> Result:
    tree = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
    cpu = lambda: sum(sum(p.cpu_times()[:2]) for p in tree)  # noqa: E731
    server_cpu, client_cpu = cpu(), time.process_time()
    latencies, errors, wall = asyncio.run(_load(f"{server.url}/predict", payloads, concurrency, seconds, total))
    return Result(len(latencies), errors, wall, latencies, time.process_time() - client_cpu, cpu() - server_cpu)


@contextlib.contextmanager
def naive(model_dir: Path, log_dir: Path) -> Iterator[servers.Server]:
    """bench/naive_server.py on the same export, on a free loopback port."""
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, str(servers.ROOT / "bench" / "naive_server.py"), str(model_dir), "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(servers.ROOT)}
    with servers.run(cmd, env, f"{url}/readyz", log_dir / f"naive-{model_dir.name}.log") as pid:
        yield servers.Server(url, pid)


def row(task: str, name: str, r: Result) -> str:
    per_request_ms = 1000 * r.server_cpu_s / max(r.ok, 1)
    return (
        f"{task:<10} {name:<8} {r.rps:>8.0f} {r.pct(50):>8.1f} {r.pct(99):>8.1f} {r.errors.total():>7} "
        f"{per_request_ms:>9.2f} {r.client_cpu_s:>9.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["tabular", "digits"])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured duration per server")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--soak", action="store_true", help="20,000 requests at concurrency 64 (ours only)")
    parser.add_argument("--artifacts", type=Path, default=servers.ARTIFACTS, help="folder of <task>/ exports")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="""BentoML server environment to try settings, e.g. DLPIPE_SERVING='{"image": {"max_latency_ms": 20}}'""",
    )
    args = parser.parse_args()
    env = dict(kv.split("=", 1) for kv in args.env)

    with tempfile.TemporaryDirectory(prefix="dlpipe-load-") as tmp:
        if args.soak:
            soak(args.tasks, args.artifacts, Path(tmp), env)
            return
        print(f"concurrency {args.concurrency}, {args.seconds:.0f} s per server, POST /predict with one row/image each")
        print(HEADER)
        for task in args.tasks:
            model_dir = servers.export_of(task, args.artifacts)
            if model_dir is None or not (model_dir / "checkpoint.pt").is_file():
                print(f"{task:<10} skipped: needs {args.artifacts}/{task}/model.onnx and checkpoint.pt (`make run`)")
                continue
            payloads = bodies(model_dir)
            results = {}
            with servers.bentoml(task, model_dir, Path(tmp), env) as server:
                load(server, payloads, args.concurrency, seconds=2)  # warm-up, not measured
                results["bentoml"] = load(server, payloads, args.concurrency, seconds=args.seconds)
            with naive(model_dir, Path(tmp)) as server:
                load(server, payloads, args.concurrency, seconds=2)
                results["naive"] = load(server, payloads, args.concurrency, seconds=args.seconds)
            for name, r in results.items():
                print(row(task, name, r) + (f"  errors: {dict(r.errors)}" if r.errors else ""))
            ours, base = results["bentoml"], results["naive"]
            verdict = "met" if ours.rps >= 2 * base.rps and ours.pct(99) <= 50 else "NOT met"
            print(f"{task:<10} ratio    {ours.rps / base.rps:>7.2f}x  (goal >= 2x and p99 <= 50 ms: {verdict})")


def soak(tasks: list[str], artifacts: Path, log_dir: Path, env: dict[str, str], total=20_000, concurrency=64) -> None:
    """`total` requests in four equal parts (RSS read after each, to tell a leak from a plateau)."""
    print(f"soak: {total:,} requests at concurrency {concurrency} per task; RSS of the server's process tree (MB)")
    print("task        requests  errors   req/s  p99 ms  RSS before -> after each quarter       growth")
    for task in tasks:
        model_dir = servers.export_of(task, artifacts)
        if model_dir is None:
            print(f"{task:<10} skipped: no {artifacts}/{task}/model.onnx (`make run`)")
            continue
        payloads = bodies(model_dir)
        parts, rss = [], []
        with servers.bentoml(task, model_dir, log_dir, env) as server:
            load(server, payloads, concurrency, total=1000)  # warm-up: first-use allocations are not growth
            rss.append(server.rss_mb())
            for _ in range(4):
                parts.append(load(server, payloads, concurrency, total=total // 4))
                rss.append(server.rss_mb())
        errors = sum((p.errors for p in parts), Counter())
        ok = sum(p.ok for p in parts)
        rps = ok / sum(p.wall_s for p in parts)
        p99 = float(np.percentile([ms for p in parts for ms in p.latencies_ms], 99))
        growth = rss[-1] / rss[0] - 1
        verdict = "ok" if errors.total() == 0 and growth < 0.10 else "FAILED"
        trail = " -> ".join(f"{m:.0f}" for m in rss)
        print(
            f"{task:<10} {ok + errors.total():>9,} {errors.total():>7} {rps:>7.0f} {p99:>7.1f}  {trail:<34} "
            f"{100 * growth:>5.1f}%  {verdict}" + (f"  errors: {dict(errors)}" if errors else "")
        )


if __name__ == "__main__":
    main()
