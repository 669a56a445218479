"""The serving families, one module each, and the registry that picks a task's family from its model bundle.

A family module describes one task's endpoints as a `serving.service.Task` subclass: tabular (`POST /predict`),
image (`/predict`, `/predict_image`), forecast (`/forecast`), text (`/classify`), encoder (`/classify`, `/embed`,
`/attention`), decoder (`/generate`, `/generate_stream`, `/attention`), seq2seq (`/translate`).

The family comes from what the bundle is, never from the task's name: meta.json's `kind` (and its `objective`
where a kind has several services), then what the exported model can do, as the files it carries beside
model.onnx say (export writes embeddings.onnx and attention.onnx for the models that have them). This module
stays light (no BentoML, no ONNX Runtime): the CLI and the gateway choose a family before any service is
imported; `Family.task_class` imports the family's module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

from components.core.contract import TaskMeta
from components.core.errors import DlpipeError


class NothingToServe(DlpipeError):
    """A task whose kind has no service, or whose bundle lacks the files its family serves from."""


class Servable(Protocol):
    """A bundle, or a description of one (serving.bundle `Bundle`, `Contents`)."""

    @property
    def meta(self) -> TaskMeta: ...

    @property
    def carries(self) -> frozenset[str]: ...


@dataclass(frozen=True)
class Family:
    """One family: its name (what /info reports and the settings are keyed by), its Task class as
    `module:Class`, and the files a bundle must carry beside model.onnx for it."""

    name: str
    task_path: str
    needs: frozenset[str] = frozenset()

    def task_class(self) -> type:
        """The family's `Task` subclass (imports its module, hence BentoML)."""
        module, name = self.task_path.split(":")
        return getattr(importlib.import_module(f"{__name__}.{module}"), name)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("tabular", "tabular:TabularTask"),
        Family("image", "image:ImageTask"),
        Family("forecast", "forecast:ForecastTask"),
        Family("text", "text:TextTask", frozenset({"tokenizer.json"})),
        Family("encoder", "encoder:EncoderTask", frozenset({"tokenizer.json", "embeddings.onnx", "attention.onnx"})),
        Family("decoder", "decoder:DecoderTask", frozenset({"attention.onnx"})),
        Family("seq2seq", "seq2seq:Seq2SeqTask"),
    )
}

# (kind, objective; None: any objective) -> the families that can serve it, the most capable first: a bundle
# gets the first whose files it carries (a text classifier with sentence-vector and attention graphs, i.e. the
# transformer encoder, gets the encoder family's /embed and /attention beside /classify).
SERVED: dict[tuple[str, str | None], tuple[str, ...]] = {
    ("tabular", None): ("tabular",),
    ("image", None): ("image",),
    ("series", None): ("forecast",),
    ("text", None): ("encoder", "text"),
    ("tokens", "causal_lm"): ("decoder",),
    ("tokens", "seq2seq"): ("seq2seq",),
}
NOT_SERVED: dict[tuple[str, str | None], str] = {  # (kind, objective) -> why there is nothing to serve
    ("tokens", "masked_lm"): "a masked-LM pretraining model only fills in masked tokens; serve a model fine-tuned "
    "from it (the `encoder` task) instead",
}


def family_of(bundle: Servable) -> Family:
    """The family serving `bundle`; NothingToServe naming the reason when there is none."""
    meta = bundle.meta
    key = (meta.kind, meta.objective)
    what = f"nothing to serve for kind {meta.kind}, objective {meta.objective}"
    reason = NOT_SERVED.get(key) or NOT_SERVED.get((meta.kind, None))
    if reason:
        raise NothingToServe(f"{what}: {reason}")
    names = SERVED.get(key) or SERVED.get((meta.kind, None))
    if not names:
        raise NothingToServe(f"{what}: no serving family for it")
    missing: frozenset[str] = frozenset()
    for name in names:
        missing = FAMILIES[name].needs - bundle.carries
        if not missing:
            return FAMILIES[name]
    raise NothingToServe(f"{what}: the model lacks {', '.join(sorted(missing))}; export and register it again")


def servable(bundle: Servable) -> bool:
    """Whether some family serves `bundle`."""
    try:
        family_of(bundle)
    except NothingToServe:
        return False
    return True
