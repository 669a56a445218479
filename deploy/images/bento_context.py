"""Lays out the build context of a serving image (deploy/images/Containerfile.bento): the Bento TAG's folder as
bento/ and the models it names, from the BentoML model store, as models/<name>/<version>/ (a BentoML model store).
Usage: python deploy/images/bento_context.py TAG FOLDER"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import bentoml


def main(tag: str, folder: Path) -> None:
    bento = bentoml.get(tag)
    shutil.copytree(bento.path, folder / "bento")
    for model in bento.info.models:
        stored = bentoml.models.get(model.tag)
        models = folder / "models" / stored.tag.name
        shutil.copytree(stored.path, models / stored.tag.version)
        (models / "latest").write_text(stored.tag.version)
    for path in folder.rglob("*"):  # the store's files are private to their owner; the image's user reads them
        path.chmod(0o755 if path.is_dir() else 0o644)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
