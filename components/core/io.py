"""Small file helpers shared by the steps: atomic writes, checkpoint reads and content hashes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components.core.errors import DataError


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, flush it to disk, then rename it into place.

    A crash, a power cut or a bad input never leaves a half-written file where a good one stood. The file gets
    the permissions any new file gets (0666 less the umask), not the private 0600 of a temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        _fsync(tmp)  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync(path.parent, directory=True)  # and so is the rename
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path: str | Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, data: Any) -> Path:
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def read_json(path: Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the step that produces it first")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise DataError(f"{path} is not valid JSON ({err}): run the step that produces it again") from None


def read_checkpoint(path: Path, needs: tuple[str, ...] = ()) -> Any:
    """What torch.save wrote to `path` (a checkpoint, or a state dict), loaded onto the CPU with weights_only=True: it
    can hold no code. A file torch cannot read (truncated, not a torch file, holding objects other than tensors and
    plain data) or a dict without the `needs` keys is a DataError naming it, not a traceback from torch's reader."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the step that produces it first")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch's readers fail on bad bytes with any type (IndexError, struct.error, ...)
        text = " ".join(str(err).split())
        if refused := re.search(r"GLOBAL (\S+)", text):  # weights_only met an object it will not build
            raise DataError(
                f"{path}: refused, it holds an object other than tensors and plain data ({refused[1]})"
            ) from None
        text = text.partition("WeightsUnpickler error:")[2].strip() or text  # the reason, between torch's advice
        text = text.partition(" Check the documentation")[0]
        reason = text.split(". ")[0].rstrip(".") or "it ends early"
        raise DataError(
            f"{path} is not a readable checkpoint, truncated or corrupt ({type(err).__name__}: {reason})"
        ) from None
    missing = [key for key in needs if not isinstance(data, dict) or key not in data]
    if missing:
        raise DataError(f"{path} is not a dlpipe checkpoint: it has no {', '.join(missing)}")
    return data


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_dir(path: Path) -> str:
    """Hash of every file's relative name and bytes, in sorted order."""
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode())
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()
