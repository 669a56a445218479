"""Every served task from one process (a small deployment): each task's endpoints under `/<task>/`
(`POST /fashion/predict_image`, `POST /tabular/predict`, `GET /tabular/info`, ...), exactly as its own service
answers them at the root, plus `GET /tasks` (each served task with its family and /info).

Tasks: $DLPIPE_TASKS (comma-separated), else every task with a `champion` in the registry or an export
(`model.onnx`) under $DLPIPE_ARTIFACTS (default `artifacts/`). A task is served from its registry champion
when it has one, else from its export; with $DLPIPE_MODEL_DIR (an artifacts folder) only from exports there.
Run: `dlpipe serve --task all` or `bentoml serve serving.gateway:Gateway`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from serving import service
from serving.bundle import Bundle, load_bundle
from serving.families import family_of, task_class

log = logging.getLogger(__name__)


def champions() -> set[str]:
    """Registered models that have a `champion` alias and a family to serve them."""
    from components.core import tracking

    client = tracking.configure().MlflowClient()
    return {m.name for m in client.search_registered_models() if "champion" in m.aliases and family_of(m.name)}


def exports(artifacts: Path) -> set[str]:
    """Task folders under `artifacts` holding an exported model with its meta.json."""
    found = artifacts.glob("*/model.onnx") if artifacts.is_dir() else []
    return {p.parent.name for p in found if (p.parent / "data/meta.json").is_file() and family_of(p.parent.name)}


def bundles() -> list[Bundle]:
    local_only = os.environ.get("DLPIPE_MODEL_DIR")
    artifacts = Path(local_only or os.environ.get("DLPIPE_ARTIFACTS") or "artifacts")
    registered = set() if local_only else champions()
    local = exports(artifacts)
    wanted = [t.strip() for t in os.environ.get("DLPIPE_TASKS", "").split(",") if t.strip()]
    tasks = wanted or sorted(registered | local)
    if not tasks:
        raise RuntimeError(f"nothing to serve: no champion in the registry and no export under {artifacts}")
    unknown = [t for t in tasks if not family_of(t) or t not in registered | local]
    if unknown:
        have = f"registered {sorted(registered)}, exported {sorted(local)}"
        raise RuntimeError(f"no servable model for {unknown}: {have}")
    return [load_bundle(t, model_dir=artifacts / t) if t not in registered else load_bundle(t) for t in tasks]


def _build() -> Any:
    tasks = [task_class(family_of(b.meta.task))(b) for b in bundles()]
    log.info("gateway serves %s", ", ".join(t.name for t in tasks))
    return service.build(tasks, name="dlpipe_gateway", prefixed=True)


Gateway = _build()
