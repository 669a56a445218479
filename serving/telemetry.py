"""What a dlpipe service reports about itself: the per-task Prometheus series (requests, latency, batch sizes)
and its logs (one JSON object per line for the `dlpipe` loggers; one line, not a traceback, per refused request).
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from typing import Any

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@functools.cache
def metrics() -> dict[str, Any]:
    """The per-task series, created on first use: prometheus_client must be imported after BentoML has set
    PROMETHEUS_MULTIPROC_DIR in the worker, so that every process's samples reach /metrics."""
    import prometheus_client as prom

    return {
        "requests": prom.Counter("dlpipe_requests", "Requests per task, route and status", ["task", "route", "status"]),
        "latency": prom.Histogram("dlpipe_request_duration_seconds", "Request latency per task", ["task", "route"]),
        "batch": prom.Histogram(
            "dlpipe_batch_size", "Items per model call (adaptive batches)", ["task", "method"], buckets=BATCH_BUCKETS
        ),
    }


@functools.cache
def series(name: str, *labels: str) -> Any:
    """One labelled series of `metrics()`, looked up once (prometheus_client's `labels` takes a lock)."""
    return metrics()[name].labels(*labels)


def observe_batch(task: str, method: str, size: int) -> None:
    """Record one model call's batch size (called inside the batched methods)."""
    series("batch", task, method).observe(size)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name}
        entry |= {"message": record.getMessage(), **getattr(record, "fields", {})}
        return json.dumps(entry)


@functools.cache
def configure_json_logs() -> None:
    """One JSON object per line on stderr for the `dlpipe` loggers (BentoML keeps its own format), masked like
    every other log line (components/core/secrets.py)."""
    from components.core.secrets import MaskingFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(MaskingFilter())
    root = logging.getLogger("dlpipe")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False


def patch_bentoml_error_logs() -> None:
    """BentoML logs the full traceback of every refused request (a pydantic ValidationError, a 4xx
    BentoMLException): a fuzzer or a bad client writes pages of log per 400. Those become one line, at
    INFO, naming the route and the error; 5xx keep their traceback."""
    from _bentoml_impl.server import app
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError

    original = getattr(app.log_exception, "__wrapped__", app.log_exception)
    refused = logging.getLogger("dlpipe.refused")

    @functools.wraps(original)
    def log_exception(request: Any, exc_info: Any = True) -> None:
        err = sys.exc_info()[1]
        client_error = isinstance(err, ValidationError) or (
            isinstance(err, BentoMLException) and err.error_code.value < 500
        )
        if not client_error:
            original(request, exc_info)
            return
        error = f"{err.error_count()} validation errors" if isinstance(err, ValidationError) else str(err)
        refused.info("refused", extra={"fields": {"path": request.url.path, "error": error[:500]}})

    app.log_exception = log_exception
