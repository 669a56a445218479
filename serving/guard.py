"""The one ASGI middleware in front of every dlpipe service (per task and gateway): what the model code never
has to think about.

For every request: a request id (the client's `X-Request-ID` when it is a sane token, else a new one), echoed
as a response header, added to every JSON error body and written in one JSON access-log line; per-task
Prometheus series (requests by route and status, latency; serving/telemetry.py) for the task routes; security
headers on every answer (a CSP that lets the playground load only its own files, nosniff, no framing). For a
POST to a prediction route, in this order: the bearer token when $DLPIPE_API_TOKEN is set (401), the route's
requests in flight in this worker at its limit (503 with Retry-After), pickle in any form (415: BentoML itself
unpickles `application/vnd.bentoml+pickle` between its own services, never from clients), any other Content-
Type than the route takes (415), a body over the size limit (413, from Content-Length or while reading), a
JSON body that is not UTF-8, a malformed multipart one, or one whose file field is text (400: BentoML would
fetch it as a URL), and no response started within the task's timeout (504; a stalled upload counts). When the
guard stops waiting for a request (its timeout, or the client gone), `stopped()` turns true in the request's
work, so a long loop (a generation) ends at its next step instead of running on unseen. GET routes (/info,
/tasks, /docs.json, /metrics, health, playground) stay open.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hmac
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

from starlette.datastructures import Headers, MutableHeaders, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.telemetry import configure_json_logs, series

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
PROBES = {"/livez", "/readyz", "/healthz", "/metrics"}  # polled every few seconds: not worth a log line
RETRY_AFTER_S = 2  # what a 503 for a full route tells the client to wait
SECURITY_HEADERS = {  # every answer; the playground is the only HTML, and it loads only its own files
    "content-security-policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
# BentoML's Swagger UI at / loads its own inline scripts and styles: a CSP for it would break it.
SWAGGER_PATHS = {"/", "/docs"}
ERROR_TYPES = ("application/json", "text/plain")  # error bodies that get the request id (as JSON)
LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|localhost|::1|\[::1\])$")

access_log = logging.getLogger("dlpipe.access")


@dataclass(frozen=True)
class Route:
    """A task's route as the guard sees it: whose it is, and which body it takes (None: a GET route)."""

    task: str
    body: str | None = "application/json"  # or "multipart/form-data" (uploads)
    files: frozenset[str] = frozenset()  # multipart fields that must be uploaded files, never text
    limit: int | None = None  # requests in flight at once per worker; one more gets 503 (None: no limit)


class Refusal(Exception):
    def __init__(self, status: int, error: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.headers = status, error, headers


class Guard:
    """`routes` maps each path of a task to its Route; `timeouts` each task to its timeout in seconds."""

    def __init__(self, app: ASGIApp, routes: dict[str, Route], timeouts: dict[str, float]) -> None:
        self.app, self.routes, self.timeouts = app, routes, timeouts
        self.token = api_token()
        self.max_body = int(os.environ.get("DLPIPE_MAX_BODY_BYTES") or MAX_BODY_BYTES)
        self.in_flight: dict[str, int] = dict.fromkeys(routes, 0)
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

        send_with_id = _with_request_id(send, request_id, scope["path"] not in SWAGGER_PATHS)

        async def send_seen(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send_with_id(message)

        route = self.routes.get(scope["path"])
        try:
            if route is None or route.body is None or scope["method"] != "POST":
                await self.app(scope, receive, send_seen)
            else:
                await self._guarded(route, scope, headers, receive, send_seen)
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

        timeout = self.timeouts[route.task]
        stop = threading.Event()

        async def run(send: Send) -> None:
            _stop.set((stop, time.monotonic() + timeout))  # in the work's own context: its threads see it
            try:
                self._authorize(headers)
                with self._slot(scope["path"], route):
                    body = await self._checked_body(route, headers, receive)
                    await self.app(scope, _replay(body, receive), send)
            except Refusal as no:
                await JSONResponse({"error": no.error}, no.status, no.headers)(scope, receive, send)

        try:
            answered = await answered_within(run, send, timeout)
        finally:
            stop.set()  # work still running (timed out, client gone) ends at its next `stopped()` check
        if not answered:
            error = f"no answer within {timeout:g} s (the {route.task} task's timeout)"
            await JSONResponse({"error": error}, status_code=504)(scope, receive, send)

    def _authorize(self, headers: Headers) -> None:
        if self.token is not None:
            given = headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                error = "missing or wrong bearer token (Authorization: Bearer <DLPIPE_API_TOKEN>)"
                raise Refusal(401, error, {"WWW-Authenticate": "Bearer"})

    @contextlib.contextmanager
    def _slot(self, path: str, route: Route) -> Iterator[None]:
        """Count the request as in flight on its route until its work has really ended (a cancelled request's
        thread included); Refusal 503 when the route already has `route.limit` requests in flight here."""
        if route.limit is not None and self.in_flight[path] >= route.limit:
            error = f"{path} is busy: {route.limit} requests in flight (its limit per worker); retry later"
            raise Refusal(503, error, {"Retry-After": str(RETRY_AFTER_S)})
        self.in_flight[path] += 1
        try:
            yield
        finally:
            self.in_flight[path] -= 1

    async def _checked_body(self, route: Route, headers: Headers, receive: Receive) -> bytes:
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
            await _check_multipart(headers, body, route.files)
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


async def _check_multipart(headers: Headers, body: bytes, files: frozenset[str]) -> None:
    """Parse the multipart body as BentoML will, and refuse (400) what it would mishandle: a malformed body
    (Starlette's 400 became BentoML's 500; found by fuzzing /predict_image); a file field sent as text, which
    BentoML fetches as a URL (`file=http://...`: a request forgery from the server, and a download around the
    body limit; `file:///etc/passwd` was a 500); a text field that Python's JSON parser refuses with a
    ValueError (an integer of more than 4,300 digits), which BentoML lets out as a 500."""

    async def chunks() -> AsyncIterator[bytes]:
        yield body

    try:
        form = await MultiPartParser(headers, chunks()).parse()
    except MultiPartException as err:
        detail = f"{err.message} ({err.__cause__})" if err.__cause__ else err.message
        raise Refusal(400, f"malformed multipart/form-data body: {detail}") from None
    try:
        for name, value in form.multi_items():
            if name in files and not isinstance(value, UploadFile):
                error = f"field {name!r} must be an uploaded file (a part with a filename), not text; "
                raise Refusal(400, error + "URLs are never fetched")
            if isinstance(value, str):
                try:
                    json.loads(value)
                except json.JSONDecodeError:
                    pass  # BentoML passes it on as a string, for the field's validator to judge
                except ValueError as err:
                    raise Refusal(400, f"field {name!r}: {err}") from None
    finally:
        await form.close()


def _with_request_id(send: Send, request_id: str, secure: bool) -> Send:
    """`send` that adds the request id as a header and into the error body (made a JSON object), Retry-After
    to every 503, and the security headers (`secure`) to every answer."""
    error: Message | None = None
    chunks: list[bytes] = []

    async def sending(message: Message) -> None:
        nonlocal error
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            headers["x-request-id"] = request_id
            if message["status"] == 503:  # BentoML's own 503 (a batch it cannot form in time) says when, too
                headers.setdefault("retry-after", str(RETRY_AFTER_S))
            if secure:
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            if message["status"] >= 400 and headers.get("content-type", "").startswith(ERROR_TYPES):
                error = message  # held until its body is complete
                return
        elif message["type"] == "http.response.body" and error is not None:
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = _error_with_id(b"".join(chunks), request_id)
            held = MutableHeaders(scope=error)
            held["content-length"], held["content-type"] = str(len(body)), "application/json"
            await send(error)
            message = {"type": "http.response.body", "body": body}
        await send(message)

    return sending


def _error_with_id(body: bytes, request_id: str) -> bytes:
    """An error body as a JSON object with the request id: a text one (Starlette's 404 "Not Found") becomes
    `{"error": text}`, BentoML's one-element list its object, any other JSON value `{"error": value}`."""
    try:
        data = json.loads(body)
    except ValueError:
        data = body.decode("utf-8", "replace")
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        data = data[0]  # BentoML answers a 4xx BentoMLException as a one-element list
    if not isinstance(data, dict):
        data = {"error": data}
    return json.dumps({**data, "request_id": request_id}).encode()


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


_stop: contextvars.ContextVar[tuple[threading.Event, float]] = contextvars.ContextVar("dlpipe_stop")


def stopped() -> bool:
    """Whether the guard has stopped waiting for the current request (its timeout passed, or the client went
    away): long work (each generated token) checks it and ends. False outside a guarded request."""
    stop = _stop.get(None)
    return stop is not None and (stop[0].is_set() or time.monotonic() > stop[1])


def api_token() -> str | None:
    """$DLPIPE_API_TOKEN without surrounding whitespace (a Secret mounted from a file often ends in a newline);
    None when unset. Set but empty or only whitespace is an error, never "no auth": fail closed."""
    raw = os.environ.get("DLPIPE_API_TOKEN")
    if raw is None:
        return None
    if not raw.strip():
        raise ValueError("DLPIPE_API_TOKEN is set but empty; set a token, or unset the variable to serve without one")
    return raw.strip()


def exposure_warning(host: str) -> str | None:
    """A warning when binding `host` serves beyond this machine while no $DLPIPE_API_TOKEN protects the routes."""
    if LOOPBACK.match(host.strip()) or api_token() is not None:
        return None
    return f"serving on {host} without DLPIPE_API_TOKEN: anyone who reaches this address can call every route"
