"""`dvc` with a faster dvc.lock reader: the command `dlpipe repro`'s lanes run (`python -m pipelines.dvclock ...`).

After every stage it runs, DVC updates dvc.lock by reading it with ruamel.yaml's round-trip parser (which keeps a
hand-edited file's comments and quoting), then writing it back: pure Python, and the read is the larger part, about
1.5 s for this repository's 6,300-line dvc.lock on these cores, paid by each of `make run`'s 89 stages
(treeverse/dvc#10629: the cost grows with the stages in one dvc.yaml). dvc.lock is DVC's own output, with no comments
to keep, so here DVC reads it with ruamel's libyaml-backed safe parser instead (0.25 s) and writes it with its own
writer, unchanged: the same bytes (tests/unit/pipelines/test_dvclock.py). Every other file DVC updates (dvc.yaml,
params.yaml under `dvc exp run -S`) keeps the round trip.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import PurePath
from typing import Any

LOCKFILE = "dvc.lock"


def parse(text: str, path: Any) -> dict:
    """dvc.lock's contents as plain dicts and lists (what DVC's round-trip parser gives, less the comments)."""
    from dvc.utils.serialize._yaml import parse_yaml

    return parse_yaml(text, path, typ="safe")  # ruamel's safe loader: libyaml's parser, YAML 1.2's types


def install() -> None:
    """Make DVC read dvc.lock with `parse` when it updates it; every other file keeps DVC's round trip."""
    import dvc.dvcfile
    from dvc.utils.serialize._common import _modify_data
    from dvc.utils.serialize._yaml import _dump

    round_trip = dvc.dvcfile.modify_yaml  # AttributeError on a DVC that no longer updates files through it

    def modify_yaml(path: Any, fs: Any = None) -> AbstractContextManager[dict]:
        if PurePath(path).name == LOCKFILE:
            return _modify_data(path, parse, _dump, fs=fs)
        return round_trip(path, fs=fs)

    dvc.dvcfile.modify_yaml = modify_yaml


@contextmanager
def installed() -> Iterator[None]:
    """`install()` for the duration of a block (tests)."""
    import dvc.dvcfile

    before = dvc.dvcfile.modify_yaml
    install()
    try:
        yield
    finally:
        dvc.dvcfile.modify_yaml = before


def main(argv: list[str] | None = None) -> int:
    """`dvc <argv>` with the lockfile writer installed."""
    from dvc.cli import main as dvc_main

    install()
    return dvc_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
