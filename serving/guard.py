"""The one ASGI middleware in front of every dlpipe service (per task and gateway): what the model code never
has to think about.

For every request: a request id (the client's `X-Request-ID` when it is a sane token, else a new one),
echoed as a response header and written in one JSON access-log line; per-task Prometheus series
(requests by route and status, latency) for the task routes. For a POST to a prediction route, in this
order: the bearer token when $DLPIPE_API_TOKEN is set (401), pickle in any form (415: BentoML itself
unpickles `application/vnd.bentoml+pickle` between its own services, never from clients), any other
Content-Type than the route takes (415), a body over the size limit (413, from Content-Length or while
reading), a JSON body that is not UTF-8 or a malformed multipart one (400), and no response started
within the task's timeout (504; a stalled upload counts). GET routes (/info, /tasks, /docs.json,
/metrics, health, playground) stay open.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 10 * 2**20  # $DLPIPE_MAX_BODY_BYTES; a 4096 x 4096 PNG fits, a 1000-row table uses < 1 MiB
PICKLE_TYPES = {
    "application/python-pickle",
    "application/x-python-pickle",
    "application/pickle",
    "application/x-pickle",
    "application/vnd.bentoml+pickle",
}
PICKLE_PROTOCOLS = range(2, 6)  # a pickle of protocol >= 2 starts with b"\x80" and the protocol number
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
PROBES = {"/livez", "/readyz", "/healthz", "/metrics"}  # polled every few seconds: not worth a log line

access_log = logging.getLogger("dlpipe.access")


@dataclass(frozen=True)
class Route:
    """A task's route as the guard sees it: whose it is, and which body it takes (None: a GET route)."""

    task: str
    body: str | None = "application/json"  # or "multipart/form-data" (uploads)


class Refusal(Exception):
    def __init__(self, status: int, error: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.headers = status, error, headers


class Guard:
    """`routes` maps each path of a task to its Route; `timeouts` each task to its timeout in seconds."""

    def __init__(self, app: ASGIApp, routes: dict[str, Route], timeouts: dict[str, float]) -> None:
        self.app, self.routes, self.timeouts = app, routes, timeouts
        self.token = os.environ.get("DLPIPE_API_TOKEN") or None
        self.max_body = int(os.environ.get("DLPIPE_MAX_BODY_BYTES") or MAX_BODY_BYTES)
        configure_json_logs()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        given = headers.get("x-request-id", "")
        request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        status = 500  # what the client sees when the app fails without answering
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["x-request-id"] = request_id
            await send(message)

        route = self.routes.get(scope["path"])
        try:
            if route is None or route.body is None or scope["method"] != "POST":
                await self.app(scope, receive, send_with_id)
            else:
                await self._guarded(route, scope, headers, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            if route is not None:
                series("requests", route.task, scope["path"], str(status)).inc()
                series("latency", route.task, scope["path"]).observe(seconds)
            if scope["path"] not in PROBES:
                entry = {"request_id": request_id, "method": scope["method"], "path": scope["path"], "status": status}
                entry |= {"ms": round(seconds * 1000, 2), "task": route.task if route else None}
                access_log.info("request", extra={"fields": entry})

    async def _guarded(self, route: Route, scope: Scope, headers: Headers, receive: Receive, send: Send) -> None:
        """Refuse what the route must not see; run it with the checked body, or answer 504 when it has not
        started answering within the task's timeout (the work is cancelled, the client is not kept waiting)."""

        async def run(send: Send) -> None:
            try:
                body = await self._checked_body(route, headers, receive)
            except Refusal as no:
                await JSONResponse({"error": no.error}, no.status, no.headers)(scope, receive, send)
                return
            await self.app(scope, _replay(body, receive), send)

        timeout = self.timeouts[route.task]
        if not await answered_within(run, send, timeout):
            error = f"no answer within {timeout:g} s (the {route.task} task's timeout)"
            await JSONResponse({"error": error}, status_code=504)(scope, receive, send)

    async def _checked_body(self, route: Route, headers: Headers, receive: Receive) -> bytes:
        if self.token is not None:
            given = headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                error = "missing or wrong bearer token (Authorization: Bearer <DLPIPE_API_TOKEN>)"
                raise Refusal(401, error, {"WWW-Authenticate": "Bearer"})
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype in PICKLE_TYPES:
            raise Refusal(415, f"pickle is never accepted ({ctype}); send {route.body}")
        if ctype != route.body and ctype != "application/octet-stream":
            raise Refusal(415, f"Content-Type must be {route.body}, not {ctype or 'missing'!r}")
        if int(headers.get("content-length") or 0) > self.max_body:
            raise Refusal(413, f"request body over the limit of {self.max_body} bytes")
        body = await _read_body(receive, self.max_body)
        if ctype == "application/octet-stream":
            if len(body) > 1 and body[0] == 0x80 and body[1] in PICKLE_PROTOCOLS:
                raise Refusal(415, "pickle is never accepted (the body is a pickle stream)")
            raise Refusal(415, f"Content-Type must be {route.body}, not 'application/octet-stream'")
        if ctype == "multipart/form-data":
            await _check_multipart(headers, body)
        if ctype == "application/json":
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as err:
                where = f"byte 0x{body[err.start]:02x} at offset {err.start}"
                raise Refusal(400, f"request body is not valid UTF-8: {where}") from None
        return body


class CancellingTimeoutMiddleware:
    """BentoML's TimeoutMiddleware (its `traffic.timeout`, answered with a 504) with its timer cancelled when
    the request finishes. BentoML 1.4's leaves every request's timer, future and context alive for the full
    timeout: at 1,500 req/s and a 40 s timeout, 60,000 of them, which is the soak test's memory growth and
    what made garbage collections pause the server for 190 ms. `patch_bentoml_timeout` puts it in place; the
    guard's per-task 504 waits the same way (`answered_within`)."""

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app, self.timeout = app, timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if not await answered_within(lambda answer: self.app(scope, receive, answer), send, self.timeout):
            error = f"Not able to process the request in {self.timeout} seconds"
            await JSONResponse({"error": error}, status_code=504)(scope, receive, send)


async def answered_within(run: Callable[[Send], Awaitable[None]], send: Send, timeout: float) -> bool:
    """Run `run(send)` until it ends; False, with the work cancelled, when it has not started answering within
    `timeout` seconds (the caller answers 504). asyncio.wait cancels its own timer either way."""
    first_send = asyncio.get_running_loop().create_future()

    async def marking_send(message: Message) -> None:
        if not first_send.done():
            first_send.set_result(None)
        await send(message)

    work = asyncio.ensure_future(run(marking_send))
    try:
        done, _ = await asyncio.wait({first_send, work}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the server dropped the request (client gone): drop its work too
        work.cancel()
        raise
    if not done and work.cancel():
        return False
    await work
    return True


def patch_bentoml_timeout() -> None:
    """Serve with CancellingTimeoutMiddleware: BentoML imports its TimeoutMiddleware from this module when it
    builds each worker's app, after our service module is imported."""
    from bentoml._internal.server.http import traffic

    traffic.TimeoutMiddleware = CancellingTimeoutMiddleware


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            raise Refusal(400, "the client closed the request before its body was complete")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Refusal(413, f"request body over the limit of {limit} bytes")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _check_multipart(headers: Headers, body: bytes) -> None:
    """Starlette refuses a malformed multipart body with a 400 that BentoML turns into a 500: parse it here
    first (found by fuzzing /predict_image)."""

    async def chunks() -> AsyncIterator[bytes]:
        yield body

    try:
        await (await MultiPartParser(headers, chunks()).parse()).close()
    except MultiPartException as err:
        detail = f"{err.message} ({err.__cause__})" if err.__cause__ else err.message
        raise Refusal(400, f"malformed multipart/form-data body: {detail}") from None


def _replay(body: bytes, then: Receive) -> Receive:
    """Hand the app the already-read body, then the real channel (which tells of a disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await then()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


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
    """One JSON object per line on stderr for the `dlpipe` loggers (BentoML keeps its own format)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("dlpipe")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False
