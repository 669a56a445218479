"""Preloaded into pipelines/stagefork.py's server by its test, in place of `dlpipe`'s entry point: the forked child
writes what it sees (arguments, directory, environment, multiprocessing's start method), registers an at-exit
handler, and exits with the code its first argument names.

`python -m tests.helpers.stagefork_probe DLPIPE CWD CODE` runs `[DLPIPE, CODE]` through stagefork's server with this
module preloaded, in its own interpreter (a process has one forkserver: the test's must be the probe's), and exits
with the child's exit code."""

from __future__ import annotations

import atexit
import json
import multiprocessing
import os
import sys
from pathlib import Path

import pipelines.cli


def main() -> None:
    seen = {
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "probe": os.environ.get("STAGEFORK_PROBE"),
        "start_method": multiprocessing.get_start_method(),
    }
    Path("seen.json").write_text(json.dumps(seen))
    atexit.register(Path("atexit").write_text, "ran")
    raise SystemExit(int(sys.argv[1]))


pipelines.cli.main = main

if __name__ == "__main__":
    from pipelines import stagefork

    stagefork.PRELOAD[:] = ["tests.helpers.stagefork_probe"]
    dlpipe, cwd, code = sys.argv[1:]
    sys.exit(stagefork.run([dlpipe, code], cwd, {**os.environ, "STAGEFORK_PROBE": "from DVC"}))
