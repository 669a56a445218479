"""Secrets never leave the process in clear: `mask` is the one function that hides them before anything is
printed, logged, tracked in MLflow or written to a file (study.json, a compiled pipeline).

It hides the password of any URL (`postgresql://user:PASSWORD@host/db` -> `postgresql://user:***@host/db`),
secret-looking query parameters (`?password=...`, `token=`, `secret=`, `sig=`...) and the values of the
credential variables in the environment (S3 secret keys, MLflow passwords and tokens), wherever they appear.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
from typing import Any

MASK = "***"
SECRET_ENV = (  # credentials the pods and the CLI get from the environment (Kubernetes Secrets)
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "DLPIPE_KFP_TOKEN",
)
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/?#@\s]*):(?P<password>[^@\s/?#`'\"]+)@")
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&;](?:password|passwd|pwd|secret|token|access_token|secret_key|secret_access_key|sig|signature)=)"
    r"(?P<value>[^&;#\s'\"`]+)",
    re.IGNORECASE,
)
_MIN_ENV_SECRET = 4  # shorter values would mask ordinary words


def mask(value: Any) -> Any:
    """`value` with every secret replaced by ***: strings are masked, dicts and lists element by element,
    anything else is returned as is."""
    if isinstance(value, str):
        return _mask_text(value)
    if isinstance(value, dict):
        return {k: mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(mask(v) for v in value)
    return value


def has_secret(text: str) -> bool:
    """True when `text` carries something `mask` would hide."""
    return mask(text) != text


def is_masked(text: str) -> bool:
    """True when `text` is a URL whose password was masked (it cannot be used to connect)."""
    return bool(re.search(rf"://[^:/?#@\s]*:{re.escape(MASK)}@", text))


def _mask_text(text: str) -> str:
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@" if m["password"] != MASK else m[0], text)
    text = _QUERY_SECRET.sub(lambda m: f"{m['head']}{MASK}", text)
    for var in SECRET_ENV:
        secret = os.environ.get(var, "").strip()
        if len(secret) >= _MIN_ENV_SECRET:
            text = text.replace(secret, MASK)
    return text


class MaskingFilter(logging.Filter):
    """A logging filter that masks each record's final message (install it on handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            # Always: a handler without this filter may have cached the unmasked traceback in exc_text already.
            record.exc_text = mask(record.exc_text or logging.Formatter().formatException(record.exc_info))
        return True


def mask_logs() -> None:
    """Mask every log line of this process: the filter on every handler there is now, the root logger's and the
    libraries' own (MLflow's prints "View run ... at: <tracking URI>"); a stderr handler is made for the root
    logger when it has none. Called again after importing a library that adds handlers (tracking.configure)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.WARNING)
    loggers = [root, *(v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger))]
    for handler in {h for logger in loggers for h in logger.handlers}:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())


def mask_tracebacks() -> None:
    """Print an uncaught exception's traceback masked (a Kubeflow step's error ends in the pod's log and the
    run's error message; a driver's error often quotes the URL it could not reach)."""

    def hook(kind: type[BaseException], err: BaseException, tb: Any) -> None:
        sys.stderr.write(mask("".join(traceback.format_exception(kind, err, tb))))

    sys.excepthook = hook
