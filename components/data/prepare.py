"""Prepare step: raw data -> seeded train/val/test splits and meta.json, the task contract (core/contract.py).

The task's kind is decided here, once, from its params.yaml block and its raw data, and recorded in meta.json;
each kind has its own preparer. Nothing downstream re-derives preprocessing or guesses the kind.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from components.config import PrepareConfig
from components.core.contract import SEQUENCE_OBJECTIVES, Kind, TaskMeta
from components.data.images import is_image_dataset

Preparer = Callable[[Path, Path, PrepareConfig, str], TaskMeta]


def kind_of(cfg: PrepareConfig, folder: Path) -> Kind:
    """What the task's examples are: from the objective and the params block, else from the raw files."""
    if cfg.objective in SEQUENCE_OBJECTIVES:
        return "tokens"
    if cfg.text is not None:
        return "text"
    if cfg.series is not None:
        return "series"
    if folder.is_dir() and is_image_dataset(folder):
        return "image"
    return "tabular"


def preparer(kind: Kind) -> Preparer:
    """The prepare function of a kind (imported on demand: text kinds need the tokenizers, tables do not)."""
    if kind == "tabular":
        from components.data.tabular import prepare_tabular as fn
    elif kind == "image":
        from components.data.image_prepare import prepare_images as fn
    elif kind == "series":
        from components.data.series import prepare_series as fn
    elif kind == "text":
        from components.data.text.prepare import prepare_text as fn
    else:
        from components.data.text.lm import prepare_lm as fn
    return fn


def prepare(raw_dir: Path, out_dir: Path, cfg: PrepareConfig, task: str) -> TaskMeta:
    """Split `raw_dir/<dataset>/` into `out_dir` as its kind's preparer does; return the contract it wrote."""
    folder = Path(raw_dir) / cfg.dataset
    return preparer(kind_of(cfg, folder))(folder, Path(out_dir), cfg, task)
