"""Benchmark: the gateway (every task in one process) against each task's own service, side by side in one run.

Both serve the same local exports (artifacts/<task>, as `make run` leaves them) and get the same load
(bench/serving_load.py's client: single-row / single-image JSON POST /predict from the test split, at the
same concurrency for the same duration): requests/s, p50/p99 latency, the gateway/own throughput ratio, and
the resident memory of each deployment (all its processes). The gateway is worth having for a small
deployment when the ratio stays near 1 and its memory is below the sum of the per-task services'.

    python bench/gateway.py                       # tabular and digits, 10 s each, concurrency 32
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import servers  # noqa: E402
from bench.serving_load import HEADER, bodies, load, row  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["tabular", "digits"])
    parser.add_argument("--artifacts", type=Path, default=servers.ARTIFACTS)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured duration per task and deployment")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    exports = {task: servers.export_of(task, args.artifacts) for task in args.tasks}
    if missing := [task for task, folder in exports.items() if folder is None]:
        raise SystemExit(f"no export for {missing} under {args.artifacts}: run `make run` (or dlpipe export) first")
    results, own_mb = {}, 0.0
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        for task, folder in exports.items():
            with servers.bentoml(task, folder, Path(tmp)) as server:
                load(server, bodies(folder), args.concurrency, seconds=2)  # warm-up, not measured
                results[task, "own"] = load(server, bodies(folder), args.concurrency, seconds=args.seconds)
                own_mb += server.rss_mb()
        with servers.gateway(args.tasks, args.artifacts, Path(tmp)) as gateway:
            for task, folder in exports.items():
                route = servers.Server(f"{gateway.url}/{task}", gateway.pid)  # load() posts to <url>/predict
                load(route, bodies(folder), args.concurrency, seconds=2)
                results[task, "gateway"] = load(route, bodies(folder), args.concurrency, seconds=args.seconds)
            gateway_mb = gateway.rss_mb()
    print(f"concurrency {args.concurrency}, {args.seconds:g} s per task and deployment")
    print(HEADER)
    for task in args.tasks:
        print(row(task, "own", results[task, "own"]))
        print(row(task, "gateway", results[task, "gateway"]))
        print(f"{task:<10} ratio    {results[task, 'gateway'].rps / results[task, 'own'].rps:>7.2f}x")
    tasks = len(args.tasks)
    print(f"resident memory: the {tasks} own services {own_mb:.0f} MB together, the gateway {gateway_mb:.0f} MB")


if __name__ == "__main__":
    main()
