"""Benchmark: can one slow caller stall a service? Six long generations (`/generate`, 1,000 tokens each) run at
once against the decoder's own service while short requests are sent one after another: a 5-token `/generate`
and an `/attention` call. Prints each kind's status codes and p50 / p99 latency, and the long ones' statuses.

Before bounded concurrency, BentoML's one-thread pool per worker queued every synchronous call behind the long
generations; now a route takes `max_in_flight_long` generations per worker (503 + Retry-After beyond) and the
other calls keep threads of their own.

    python bench/serving_stall.py --artifacts artifacts      # the decoder's export (after `make run`)
    python bench/serving_stall.py --gateway                  # the gateway: the short calls go to tabular
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import servers  # noqa: E402

LONG = {"prompt": "ROMEO:", "max_new_tokens": 1000, "temperature": 0.8, "seed": 1}
SHORT = {"/generate": {"prompt": "ROMEO:", "max_new_tokens": 5, "seed": 2}, "/attention": {"text": "ROMEO: "}}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(url: str, path: str, longs: int, shorts: int, prefix: str = "") -> None:
    """Start `longs` long generations, then send `shorts` short requests to `path` one after another."""
    long_status: list[int] = []

    def long_call() -> None:
        try:
            long_status.append(httpx.post(f"{url}{prefix}/generate", json=LONG, timeout=300).status_code)
        except httpx.TimeoutException:
            long_status.append(0)

    threads = [threading.Thread(target=long_call) for _ in range(longs)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # the long ones are in
    seconds, codes, during = [], Counter(), 0
    with httpx.Client(base_url=url, timeout=300) as http:
        for _ in range(shorts):
            running = any(thread.is_alive() for thread in threads)
            started = time.perf_counter()
            codes[http.post(path, json=SHORT[path]).status_code] += 1
            seconds.append(time.perf_counter() - started)
            during += running
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    done = time.perf_counter() - started
    p50, p99 = statistics.median(seconds) * 1000, percentile(seconds, 0.99) * 1000
    print(f"short {path:<11} n={shorts} ({during} sent while long ones ran) statuses={dict(codes)}")
    print(f"    p50={p50:.0f} ms p99={p99:.0f} ms max={max(seconds) * 1000:.0f} ms")
    print(
        f"    long /generate x{longs}: statuses={dict(Counter(long_status))}, last done {done:.1f} s after the shorts"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=servers.ARTIFACTS)
    parser.add_argument("--long", type=int, default=6, help="long generations at once")
    parser.add_argument("--short", type=int, default=20, help="short requests of each kind, one after another")
    parser.add_argument("--gateway", action="store_true", help="decoder and tabular in the gateway")
    args = parser.parse_args()
    if args.gateway:
        from components.core.contract import load_meta

        meta = load_meta(args.artifacts / "tabular" / "data")
        SHORT["/tabular/predict"] = {"records": [dict(zip(meta.feature_names, meta.scaler["mean"], strict=True))]}
        with (
            tempfile.TemporaryDirectory() as tmp,
            servers.gateway(["decoder", "tabular"], args.artifacts, Path(tmp)) as server,
        ):
            measure(server.url, "/tabular/predict", args.long, args.short, prefix="/decoder")
        return
    model_dir = servers.export_of("decoder", args.artifacts)
    if model_dir is None:
        raise SystemExit(f"no decoder export under {args.artifacts}: run `make run` first")
    with tempfile.TemporaryDirectory() as tmp, servers.bentoml("decoder", model_dir, Path(tmp)) as server:
        for path in SHORT:
            measure(server.url, path, args.long, args.short)


if __name__ == "__main__":
    main()
