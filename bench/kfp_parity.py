"""Benchmark: `dlpipe pipeline run --local --task all` (kfp.local) against `dvc repro`, same params.

A copy of the working tree (tracked and untracked files) pulls its data, then runs `dvc repro` of the chosen
tasks' register stages; a fresh engine home runs the `all` pipeline narrowed to the same tasks. Printed: every
task's test metrics from both runners and the largest difference, and the wall-time ratio kfp.local / dvc repro
(goal <= 1.3). Results in bench/results/kfp_parity.json. `--mlflow-server` runs the kfp side against a real
`mlflow server` on loopback instead of SQLite (the client-server path, HTTP, async logging).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from components.config import load_params, tasks

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def sh(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Run a command; return its wall time in seconds."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def copy_tree(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split("\0")  # fmt: skip
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dst / name)


def mlflow_server(folder: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{folder / 'server.db'}"]
    cmd += ["--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--workers", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2).close()
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    sys.exit("mlflow server did not answer /health within a minute")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=tasks(load_params(ROOT / "params.yaml")))
    parser.add_argument("--mlflow-server", action="store_true", help="kfp side tracks to a loopback mlflow server")
    args = parser.parse_args()
    env = {
        k: v for k, v in os.environ.items() if k not in ("DLPIPE_HOME", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    with tempfile.TemporaryDirectory(prefix="dlpipe-parity-") as tmp:
        repo, home = Path(tmp) / "repo", Path(tmp) / "kfp"
        copy_tree(repo)
        sh(["git", "init", "-q"], repo, env)
        sh(["dlpipe", "data", "pull"], repo, env)
        dvc_s = sh(["dvc", "repro", *[f"register@{t}" for t in args.tasks]], repo, env)

        kfp_env = {**env, "DLPIPE_HOME": str(home), "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}"}
        server = None
        if args.mlflow_server:
            server, kfp_env["MLFLOW_TRACKING_URI"] = mlflow_server(Path(tmp), env)
        home.mkdir()
        only = [x for t in args.tasks for x in ("--only", t)]
        try:  # run from the copy: kfp.local's steps import the project from the working directory
            kfp_s = sh(["dlpipe", "pipeline", "run", "--local", "--task", "all", *only], repo, kfp_env)
        finally:
            if server is not None:
                server.terminate()
        (run_dir,) = home.glob("local_outputs/dlpipe-all-*")
        kfp = {p.stem: json.loads(p.read_text()) for p in run_dir.glob("evaluate*/metrics/*.json")}
        dvc = {t: json.loads((repo / "metrics" / f"{t}.json").read_text()) for t in args.tasks}

    rows, worst = [], 0.0
    print(f"{'task':18s} {'metric':14s} {'dvc repro':>12s} {'kfp.local':>12s} {'|diff|':>9s}")
    for task in args.tasks:
        for name, value in sorted(dvc[task].items()):
            diff = abs(kfp[task][name] - value)
            worst = max(worst, diff)
            rows.append({"task": task, "metric": name, "dvc": value, "kfp": kfp[task][name], "diff": diff})
            print(f"{task:18s} {name[:14]:14s} {value:12.6f} {kfp[task][name]:12.6f} {diff:9.1e}")
    ratio = kfp_s / dvc_s
    print(f"wall time: dvc repro {dvc_s:.0f} s, kfp.local {kfp_s:.0f} s, ratio {ratio:.2f} (goal <= 1.3)")
    print(f"largest metric difference {worst:.1e}; tracking: {'mlflow server (HTTP)' if server else 'SQLite'}")
    out = ROOT / "bench" / "results" / "kfp_parity.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {"tasks": args.tasks, "dvc_s": dvc_s, "kfp_s": kfp_s, "ratio": ratio, "max_diff": worst, "rows": rows}
    out.write_text(json.dumps({**summary, "mlflow_server": bool(server)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
