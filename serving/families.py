"""Which code serves a task: the task name's family (`tabular_wine` is a tabular task), its per-task BentoML
service and its `Task` class. Light on purpose: the CLI imports it without BentoML."""

from __future__ import annotations

FAMILIES = {  # task (or the part of its name before "_") -> family
    "tabular": "tabular",
    "digits": "image",
    "mnist": "image",
    "fashion": "image",
    "forecast": "forecast",  # POST /forecast
    "sentiment": "text",  # POST /classify
    "decoder": "decoder",  # POST /generate, /generate_stream, /attention
    "encoder": "encoder",  # POST /classify, /embed, /attention
    "seq2seq": "seq2seq",  # POST /translate
}
SERVICES = {  # family -> the per-task service's import path (`bentoml serve <path>`)
    "tabular": "serving.tabular:Tabular",
    "image": "serving.image:Image",
    "forecast": "serving.forecast:Forecaster",
    "text": "serving.text:TextClassifier",
    "decoder": "serving.decoder:Decoder",
    "encoder": "serving.encoder:Encoder",
    "seq2seq": "serving.seq2seq:Translator",
}
TASK_CLASSES = {  # family -> its serving.service.Task subclass, what the gateway builds from
    "tabular": "serving.tabular:TabularTask",
    "image": "serving.image:ImageTask",
    "forecast": "serving.forecast:ForecastTask",
    "text": "serving.text:TextTask",
    "decoder": "serving.decoder:DecoderTask",
    "encoder": "serving.encoder:EncoderTask",
    "seq2seq": "serving.seq2seq:Seq2SeqTask",
}
GATEWAY = "serving.gateway:Gateway"


def family_of(task: str) -> str | None:
    """The family serving `task`, or None. A masked-LM pretraining task (`encoder_mlm`) has nothing to serve:
    its fine-tuned encoder (`encoder`) is served instead."""
    if task.endswith("_mlm"):
        return None
    return FAMILIES.get(task) or FAMILIES.get(task.split("_")[0])


def task_class(family: str) -> type:
    """The family's `Task` subclass (imports its module, hence BentoML)."""
    import importlib

    module, name = TASK_CLASSES[family].split(":")
    return getattr(importlib.import_module(module), name)
