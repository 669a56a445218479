"""Preloaded into pipelines/stagefork.py's server by its test, in place of `dlpipe`'s entry point: the forked child
writes what it sees (arguments, directory, environment, multiprocessing's start method), registers an at-exit
handler, and exits with the code its first argument names."""

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
