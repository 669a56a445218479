"""How each task is served: its adaptive batching window, per-request timeout and HTTP worker count (per family,
with overrides from the environment), and BentoML's tracing switch.

No BentoML, no ONNX Runtime: the settings are testable without a server.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, TypeAdapter

from serving import session
from serving.schemas import MAX_IMAGES


class Settings(BaseModel):
    """How one task is served: its adaptive batching window, its per-request timeout, its worker processes
    and how many requests each route takes at once (per worker)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    max_batch_size: PositiveInt = 256
    max_latency_ms: PositiveInt = 1000
    timeout_s: float = Field(30.0, gt=0)
    workers: PositiveInt | None = None  # HTTP worker processes of the task's own service; None: one per core
    max_in_flight: PositiveInt = 256  # requests in flight per route and worker; one more gets 503
    max_in_flight_long: PositiveInt = 2  # the same for long routes (generations): each holds a thread for seconds

    def worker_count(self) -> int:
        """Python serves one request at a time per process: a light model's service needs a process per core
        to use the machine (measured on 2 cores: tabular 1,500 -> 2,200 req/s with a second worker)."""
        return self.workers or session.available_cores()


# Per family; $DLPIPE_SERVING (JSON, keyed by family or task, e.g. '{"fashion": {"max_latency_ms": 50}}') overrides.
SETTINGS: dict[str, Settings] = {
    "tabular": Settings(max_batch_size=1000, max_latency_ms=1000),
    "image": Settings(max_batch_size=MAX_IMAGES, max_latency_ms=1000),
    "forecast": Settings(max_batch_size=256, max_latency_ms=1000),
    "text": Settings(max_batch_size=256, max_latency_ms=1000),
    "decoder": Settings(timeout_s=120.0, workers=1),  # 1000 generated tokens rerun the window 1000 times
    "encoder": Settings(workers=1),
    "seq2seq": Settings(max_batch_size=256, max_latency_ms=1000),
}


def for_task(task: str, family: str) -> Settings:
    """The family's settings with $DLPIPE_SERVING's family entry, then its task entry, applied on top
    (and $DLPIPE_TIMEOUT_S, one timeout for every task, last)."""
    overrides = TypeAdapter(dict[str, dict[str, Any]]).validate_json(os.environ.get("DLPIPE_SERVING") or "{}")
    merged = SETTINGS[family].model_dump() | overrides.get(family, {}) | overrides.get(task, {})
    if os.environ.get("DLPIPE_TIMEOUT_S"):
        merged["timeout_s"] = float(os.environ["DLPIPE_TIMEOUT_S"])
    return Settings.model_validate(merged)


def tracing() -> dict[str, Any]:
    """BentoML's OpenTelemetry settings: spans for no URL unless $DLPIPE_TRACING is set. BentoML makes a span
    per request even when nothing collects them (its default sample rate is 0): ~15% of a small model's
    request CPU. With DLPIPE_TRACING=1 it traces as its own configuration (exporter, sample rate) says."""
    return {} if os.environ.get("DLPIPE_TRACING") else {"excluded_urls": ".*"}
