"""Packaging: a Bento per task that carries its model, built offline.

serving/bentofile.yaml holds what every Bento shares (pinned packages, `lock_packages: false`, included
files). `build_bento` copies the task's model into the BentoML model store (so the Bento needs no registry),
stages the code with `serving/packed.json` naming the task and that model (BentoML applies a Bento's `envs`
only inside its container image, so the code, not the environment, says what to load), and runs
`bentoml build` there, in a process that imports the staged code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from serving.bundle import PACKED, load_bundle, save_to_store

STAGED = ("serving", "components")  # the folders a Bento's code comes from (bentofile `include` picks files)


def build_bento(
    task: str,
    service: str,
    bentofile: Path,
    root: Path,
    model_uri: str | None = None,
    model_dir: Path | None = None,
) -> str:
    """Store the task's model, build its Bento from `bentofile` with the code under `root`; return the tag."""
    bundle = load_bundle(task, model_uri=model_uri, model_dir=model_dir)
    name = f"dlpipe-{task}".replace("_", "-")
    model_tag = save_to_store(bundle, name)
    spec = yaml.safe_load(bentofile.read_text())
    packed = f"serving/{PACKED.name}"
    spec |= {"service": service, "models": [model_tag], "include": [*spec["include"], packed]}
    spec["labels"] = spec.get("labels", {}) | {"task": task, "model_version": bundle.version or "local"}
    with tempfile.TemporaryDirectory(prefix="dlpipe-bento-") as tmp:
        stage = Path(tmp)
        for folder in STAGED:
            shutil.copytree(root / folder, stage / folder, ignore=shutil.ignore_patterns("__pycache__"))
        (stage / packed).write_text(json.dumps({"task": task, "model": model_tag}))
        (stage / "bentofile.yaml").write_text(yaml.safe_dump(spec | {"name": name}))
        env = {k: v for k, v in os.environ.items() if k not in ("DLPIPE_TASK", "DLPIPE_MODEL_DIR", "DLPIPE_MODEL_URI")}
        argv = [sys.executable, "-m", "bentoml", "build", "--output", "tag", "."]
        done = subprocess.run(argv, cwd=stage, env=env | {"PYTHONPATH": str(stage)}, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"bentoml build failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
