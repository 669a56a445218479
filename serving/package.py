"""Packaging: a Bento per task that carries its model, built offline.

serving/bentofile.yaml holds what every Bento shares (pinned packages, `lock_packages: false`, included
files); `build_bento` adds the task's service, its model (copied into the BentoML model store, so the Bento
needs no registry) and the environment that makes the service load that model.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from serving import runtime


def build_bento(
    task: str,
    service: str,
    bentofile: Path,
    build_ctx: Path,
    model_uri: str | None = None,
    model_dir: Path | None = None,
) -> str:
    """Store the task's model, build the Bento from `bentofile` + the task's settings; return the Bento tag."""
    import bentoml

    bundle = runtime.load_bundle(task, model_uri=model_uri, model_dir=model_dir)
    name = f"dlpipe-{task}".replace("_", "-")
    model_tag = runtime.save_to_store(bundle, name)
    spec = yaml.safe_load(bentofile.read_text())
    envs = {"DLPIPE_TASK": task, "DLPIPE_BENTO_MODEL": model_tag}
    spec |= {"service": service, "models": [model_tag], "envs": [{"name": k, "value": v} for k, v in envs.items()]}
    spec["labels"] = spec.get("labels", {}) | {"task": task, "model_version": bundle.version or "local"}
    saved = {k: os.environ.pop(k, None) for k in ("DLPIPE_MODEL_DIR", "DLPIPE_MODEL_URI")}
    os.environ.update(envs)  # `bentoml build` imports the service, which loads the model as the Bento will
    try:
        bento = bentoml.bentos.build(**spec, name=name, build_ctx=str(build_ctx))
    finally:
        os.environ.update({k: v for k, v in saved.items() if v is not None})
    return str(bento.tag)
