"""`dvc` as `dlpipe repro`'s lanes run it (`python -m pipelines.dvclock --lanes`: one lane after another, as they
come on standard input): a faster dvc.lock update (here), and `dlpipe` stage commands forked from a process that
imported torch and MLflow once (pipelines/stagefork.py).

After every stage it runs, DVC updates dvc.lock: it reads the whole file with ruamel.yaml's round-trip parser (which
keeps a hand-edited file's comments and quoting) and writes the whole file back. Both are pure Python and grow with
the stages in one dvc.yaml (treeverse/dvc#10629): for this repository's 6,300-line dvc.lock about 1.2 s to read and
0.8 s to write on these cores, paid by each of `make run`'s 89 stages. dvc.lock is DVC's own output, with no comments
to keep, so here DVC reads it with ruamel's libyaml-backed safe parser (0.25 s), and writes it with its own writer
one stage at a time, keeping the text of every stage this process has written before (`dump`). The bytes are the
ones DVC writes (tests/unit/pipelines/test_dvclock.py); six stages of a lane take 11-12 s instead of 23-25 s. Every
other file DVC updates (dvc.yaml, params.yaml under `dvc exp run -S`) keeps the round trip.
"""

from __future__ import annotations

import functools
import io
import json
import sys
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import PurePath
from typing import Any, TextIO

LOCKFILE = "dvc.lock"
LANE_END = "dlpipe-lane-end"  # `serve_lanes` prints it and the lane's exit code after each lane


def parse(text: str, path: Any) -> dict:
    """dvc.lock's contents as plain dicts and lists (what DVC's round-trip parser gives, less the comments)."""
    from dvc.utils.serialize._yaml import parse_yaml

    return parse_yaml(text, path, typ="safe")  # ruamel's safe loader: libyaml's parser, YAML 1.2's types


_STAGE_TEXT: dict[tuple[str, str], str] = {}  # (stage name, its data as JSON) -> its lines in dvc.lock


def dump(data: Any, stream: TextIO) -> None:
    """DVC's dvc.lock writer, one stage at a time. DVC writes the whole file after each stage; a stage whose data this
    process has written before keeps its text, so a lane renders each stage once, not once per stage it runs. The
    file is block style, so a stage's lines depend on that stage alone: joined, they are the whole file's."""
    from dvc.utils.serialize._yaml import _dump

    if list(data) != ["schema", "stages"] or not data["stages"]:
        _dump(data, stream)
        return
    stream.write(_text({"schema": data["schema"]}) + "stages:\n")
    for name, stage in data["stages"].items():
        key = (name, json.dumps(stage, default=str))  # tells 1, 1.0 and true apart, as YAML does
        if key not in _STAGE_TEXT:
            _STAGE_TEXT[key] = _text({"stages": {name: stage}}).split("\n", 1)[1]
        stream.write(_STAGE_TEXT[key])


def _text(data: Any) -> str:
    """What DVC's writer writes for `data`."""
    from dvc.utils.serialize._yaml import _dump

    stream = io.StringIO()
    _dump(data, stream)
    return stream.getvalue()


def install() -> None:
    """Make DVC update dvc.lock with `parse` and `dump`; every other file keeps DVC's round trip."""
    import dvc.dvcfile
    from dvc.utils.serialize._common import _modify_data

    round_trip = dvc.dvcfile.modify_yaml  # AttributeError on a DVC that no longer updates files through it

    def modify_yaml(path: Any, fs: Any = None) -> AbstractContextManager[dict]:
        if PurePath(path).name == LOCKFILE:
            return _modify_data(path, parse, dump, fs=fs)
        return round_trip(path, fs=fs)

    dvc.dvcfile.modify_yaml = modify_yaml


def main(argv: list[str] | None = None) -> int:
    """`dvc <argv>` with the lockfile writer installed and `dlpipe` stage commands forked (pipelines/stagefork.py);
    `--lanes` runs `serve_lanes` on standard input instead."""
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--lanes"]:
        return serve_lanes(sys.stdin)
    return _dvc(argv)


@functools.cache
def _install() -> None:
    from pipelines import stagefork

    install()
    stagefork.install()


def _dvc(argv: list[str]) -> int:
    from dvc.cli import main as dvc_main

    _install()
    return dvc_main(argv)


def serve_lanes(lines: Iterable[str]) -> int:
    """`dlpipe repro`'s worker: for each line read, a JSON list of stage names (one lane), `dvc --wait-for-lock repro
    --single-item <those stages>`, then a line `LANE_END <its exit code>`. DVC and the stage server's imports are paid
    once for every lane the worker runs (DVC's `main` runs again in the same process: about 1 s to load the
    repository each time, where a new `dvc` process costs 2-3 s and a new stage server 5-8)."""
    for line in lines:
        if line.strip():
            code = _dvc(["--wait-for-lock", "repro", "--single-item", *json.loads(line)])
            sys.stderr.flush()
            print(f"{LANE_END} {code}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
