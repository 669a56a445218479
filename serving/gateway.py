"""Every served task from one process (a small deployment): each task's endpoints under `/<task>/`
(`POST /fashion/predict_image`, `POST /tabular/predict`, `GET /tabular/info`, ...), exactly as its own service
answers them at the root, plus `GET /tasks` (each served task with its family and /info).

Tasks: $DLPIPE_TASKS (comma-separated), else every task with a `champion` in the registry or an export
(`model.onnx`) under $DLPIPE_ARTIFACTS (default `artifacts/`) whose model some family serves (serving/families:
by its kind; a masked-LM pretraining model, say, is skipped). A task is served from its registry champion when
it has one, else from its export; with $DLPIPE_MODEL_DIR (an artifacts folder) only from exports there.
Run: `dlpipe serve --task all` or `bentoml serve serving.gateway:Gateway`.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

from serving import families, service
from serving.bundle import Bundle, describe, load_bundle, shared_with_workers

log = logging.getLogger(__name__)


def champions() -> set[str]:
    """Registered models that have a `champion` alias."""
    from components.core import tracking

    client = tracking.configure().MlflowClient()
    return {m.name for m in client.search_registered_models() if "champion" in m.aliases}


def exports(artifacts: Path) -> set[str]:
    """Task folders under `artifacts` holding an exported model with its meta.json."""
    found = artifacts.glob("*/model.onnx") if artifacts.is_dir() else []
    return {p.parent.name for p in found if (p.parent / "data/meta.json").is_file()}


def sources() -> dict[str, dict[str, Any]]:
    """Each task to serve and where its model is (`load_bundle` keyword arguments): the registry's champion,
    else the export. Tasks some family serves, or exactly $DLPIPE_TASKS (each must be servable)."""
    local_only = os.environ.get("DLPIPE_MODEL_DIR")
    artifacts = Path(local_only or os.environ.get("DLPIPE_ARTIFACTS") or "artifacts")
    registered = set() if local_only else champions()
    local = exports(artifacts)
    found = {t: {} if t in registered else {"model_dir": artifacts / t} for t in sorted(registered | local)}
    wanted = [t.strip() for t in os.environ.get("DLPIPE_TASKS", "").split(",") if t.strip()]
    missing = [t for t in wanted if t not in found]
    if missing:
        have = f"registered {sorted(registered)}, exported {sorted(local)}"
        raise RuntimeError(f"no servable model for {missing}: {have}")
    chosen: dict[str, dict[str, Any]] = {}
    for task in wanted or found:
        try:
            families.family_of(describe(task, **found[task]))
        except families.NothingToServe as err:
            if wanted:
                raise RuntimeError(f"no servable model for {task!r}: {err}") from None
            log.info("gateway skips %s: %s", task, err)
            continue
        chosen[task] = found[task]
    if not chosen:
        raise RuntimeError(f"nothing to serve: no servable champion in the registry and no export under {artifacts}")
    return chosen


def bundles() -> list[Bundle]:
    """Every chosen task's bundle; in an HTTP worker, the ones its server process loaded (serving/bundle.py)."""
    return shared_with_workers(lambda: [load_bundle(task, **where) for task, where in sources().items()])


@functools.cache
def _build() -> Any:
    tasks = [families.family_of(b).task_class()(b) for b in bundles()]
    log.info("gateway serves %s", ", ".join(t.name for t in tasks))
    return service.build(tasks, name="dlpipe_gateway", prefixed=True)


def __getattr__(name: str) -> Any:
    """`Gateway`, built on first access (what `bentoml serve serving.gateway:Gateway` reads), so the task
    selection above can be imported without loading any model."""
    if name == "Gateway":
        return _build()
    raise AttributeError(name)
