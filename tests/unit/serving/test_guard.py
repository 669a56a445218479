"""The guard: BentoML's timeout middleware replaced by one that cancels its timer, and the guard in front of a
small app attacked the ways a hostile caller would (full routes, timeouts, URLs as files, empty tokens)."""

from __future__ import annotations

import time
from typing import Any

import pytest


def test_bentoml_timeout_middleware_cancels_its_timer_and_still_times_out() -> None:
    """BentoML 1.4's TimeoutMiddleware left each request's timer alive for the whole timeout (60,000 live
    timers at 1,500 req/s): the soak test's memory growth and long garbage-collection pauses."""
    import asyncio

    from bentoml._internal.server.http import traffic

    from serving import guard

    guard.patch_bentoml_timeout()
    assert traffic.TimeoutMiddleware is guard.CancellingTimeoutMiddleware

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            await asyncio.sleep(5)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def call(middleware: Any, path: str) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await middleware({"type": "http", "path": path}, None, send)
        return sent

    async def main() -> None:
        middleware = traffic.TimeoutMiddleware(app, timeout=60)
        for _ in range(200):
            assert (await call(middleware, "/fast"))[0]["status"] == 200
        loop = asyncio.get_running_loop()
        assert not [h for h in loop._scheduled if not h.cancelled()]  # no timer left waiting
        started = time.monotonic()
        answer = await call(traffic.TimeoutMiddleware(app, timeout=0.2), "/slow")
        assert answer[0]["status"] == 504 and time.monotonic() - started < 2

    asyncio.run(main())


# --- hostile callers: the guard in front of a small ASGI app, driven by a real HTTP client ------------------


def _guarded(routes: dict[str, Any], timeout: float = 5.0) -> tuple[Any, dict[str, Any]]:
    """The guard in front of a Starlette app: /slow waits for its `release` event, /spin is sync work that runs
    in a thread until the guard says stop, /upload and /echo answer what reached them, /bento answers
    BentoML's 4xx error shape; `seen` records what the app did."""
    import asyncio
    import threading

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    from serving import guard

    seen: dict[str, Any] = {"calls": 0, "spins": 0, "spin_ended": threading.Event(), "release": asyncio.Event()}

    async def slow(_: Any) -> PlainTextResponse:
        seen["calls"] += 1
        await seen["release"].wait()
        return PlainTextResponse("done")

    def spin(_: Any) -> PlainTextResponse:
        while not guard.stopped():
            seen["spins"] += 1
            time.sleep(0.01)
        seen["spin_ended"].set()
        # stopped() turns true at the deadline itself: a step that ends then would race the guard's 504
        # (either answer is right at that instant); work that takes a while to wind down leaves only the 504
        time.sleep(0.5)
        return PlainTextResponse("stopped")

    async def echo(_: Any) -> PlainTextResponse:
        seen["calls"] += 1
        return PlainTextResponse("reached the app")

    async def bento(_: Any) -> JSONResponse:
        return JSONResponse([{"error": "bad image"}], status_code=400)

    async def overloaded(_: Any) -> JSONResponse:
        return JSONResponse({"error": "batch not formed in time"}, status_code=503)

    paths = {"/slow": slow, "/spin": spin, "/upload": echo, "/echo": echo, "/bento": bento, "/busy": overloaded}
    app = Starlette(routes=[Route(p, f, methods=["GET", "POST"]) for p, f in paths.items()])
    return guard.Guard(app, routes=routes, timeouts={"t": timeout}), seen


def _client(app: Any) -> Any:
    import httpx

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=10)


def test_a_full_route_answers_503_with_retry_after_and_other_routes_stay_open() -> None:
    import asyncio

    from serving import guard

    app, seen = _guarded({"/slow": guard.Route("t", limit=2), "/echo": guard.Route("t")})

    async def main() -> None:
        async with _client(app) as http:
            held = [asyncio.create_task(http.post("/slow", json={})) for _ in range(2)]
            while seen["calls"] < 2:
                await asyncio.sleep(0.01)
            full = await http.post("/slow", json={})
            assert full.status_code == 503 and full.headers["retry-after"] == str(guard.RETRY_AFTER_S)
            assert "2 requests in flight" in full.json()["error"] and seen["calls"] == 2
            assert full.json()["request_id"] == full.headers["x-request-id"]
            assert (await http.post("/echo", json={})).status_code == 200  # another route is not held up
            seen["release"].set()
            assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
            assert (await http.post("/slow", json={})).status_code == 200  # the slots were given back

    asyncio.run(main())


def test_the_timeout_stops_the_work_itself_not_only_the_answer() -> None:
    """Before, a timed-out request's thread ran on to the end unseen (a 1,000-token generation held its
    thread and CPU for the rest of it after the client had its 504)."""
    import asyncio

    from serving import guard

    app, seen = _guarded({"/spin": guard.Route("t")}, timeout=2.0)  # long enough for the thread to start on a busy box

    async def main() -> None:
        async with _client(app) as http:
            answer = await http.post("/spin", json={})
            assert answer.status_code == 504 and "timeout" in answer.json()["error"]
            assert answer.json()["request_id"] == answer.headers["x-request-id"]
        assert seen["spins"] > 0 and await asyncio.to_thread(seen["spin_ended"].wait, 10)

    asyncio.run(main())
    assert not guard.stopped()  # outside a request nothing is stopped


def test_a_file_field_sent_as_text_is_refused_before_the_app_could_fetch_it() -> None:
    """BentoML fetches a multipart file field given as text as a URL (`file:///etc/passwd` was a 500; a public
    http URL was downloaded by the server)."""
    import asyncio

    from serving import guard

    route = guard.Route("t", "multipart/form-data", files=frozenset({"file"}))
    app, seen = _guarded({"/upload": route})

    async def main() -> None:
        async with _client(app) as http:
            for url in ("file:///etc/passwd", "http://169.254.169.254/latest/meta-data/", "https://example.org/x.png"):
                answer = await http.post("/upload", files={"file": (None, url)})
                assert answer.status_code == 400, answer.text
                assert "'file' must be an uploaded file" in answer.json()["error"]
            huge = await http.post("/upload", files={"file": ("x.png", b"\x89PNG")}, data={"top_k": "9" * 5000})
            assert huge.status_code == 400 and "top_k" in huge.json()["error"]  # json.loads' ValueError: was a 500
            assert seen["calls"] == 0
            ok = await http.post("/upload", files={"file": ("x.png", b"\x89PNG")}, data={"top_k": "9" * 400})
            assert ok.status_code == 200 and seen["calls"] == 1  # the field's validator judges a big number

    asyncio.run(main())


def test_security_headers_and_the_request_id_in_every_error_body() -> None:
    import asyncio

    from serving import guard

    app, _ = _guarded({"/echo": guard.Route("t"), "/bento": guard.Route("t")})

    async def main() -> None:
        async with _client(app) as http:
            page = await http.get("/echo")
            csp = page.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "default-src 'self'" in csp
            assert page.headers["x-content-type-options"] == "nosniff" and page.headers["x-frame-options"] == "DENY"
            wrong = await http.post(
                "/echo", content=b"x", headers={"content-type": "text/plain", "x-request-id": "r-1"}
            )
            assert wrong.status_code == 415 and wrong.json()["request_id"] == "r-1"
            listed = await http.post("/bento", json={})  # BentoML's 4xx shape, a one-element list, becomes an object
            assert listed.json() == {"error": "bad image", "request_id": listed.headers["x-request-id"]}
            assert int(listed.headers["content-length"]) == len(listed.content)
            busy = await http.get("/busy")  # BentoML's own 503 says when to come back too
            assert busy.headers["retry-after"] == str(guard.RETRY_AFTER_S) and "request_id" in busy.json()
            missing = await http.get("/nowhere", headers={"x-request-id": "r-2"})  # Starlette's text 404
            assert missing.status_code == 404 and missing.json() == {"error": "Not Found", "request_id": "r-2"}

    asyncio.run(main())


def test_the_api_token_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty token turned auth off; a Secret file's trailing newline made the token impossible to send."""
    from serving import guard

    monkeypatch.delenv("DLPIPE_API_TOKEN", raising=False)
    assert guard.api_token() is None
    assert "without DLPIPE_API_TOKEN" in guard.exposure_warning("0.0.0.0")
    assert guard.exposure_warning("127.0.0.1") is None and guard.exposure_warning("::1") is None
    for empty in ("", "  ", "\n"):
        monkeypatch.setenv("DLPIPE_API_TOKEN", empty)
        with pytest.raises(ValueError, match="DLPIPE_API_TOKEN is set but empty"):
            guard.api_token()
    monkeypatch.setenv("DLPIPE_API_TOKEN", "s3cret\n")
    assert guard.api_token() == "s3cret" and guard.exposure_warning("0.0.0.0") is None


def test_the_token_of_a_secret_file_works_and_an_empty_one_refuses_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from serving import guard

    monkeypatch.setenv("DLPIPE_API_TOKEN", "s3cret\n")
    app, _ = _guarded({"/echo": guard.Route("t")})

    async def main() -> None:
        async with _client(app) as http:
            assert (await http.post("/echo", json={}, headers={"authorization": "Bearer s3cret"})).status_code == 200
            assert (await http.post("/echo", json={})).status_code == 401

    asyncio.run(main())
    monkeypatch.setenv("DLPIPE_API_TOKEN", " ")
    with pytest.raises(ValueError, match="set but empty"):
        _guarded({"/echo": guard.Route("t")})


def test_dlpipe_serve_refuses_an_empty_token_and_warns_on_an_exposed_host(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from serving import cli

    calls: list[list[str]] = []
    monkeypatch.setattr(cli.os, "execve", lambda exe, argv, env: calls.append(argv))
    monkeypatch.setenv("DLPIPE_API_TOKEN", "")
    with pytest.raises(cli.typer.BadParameter, match="set but empty"):
        cli.serve(task="all")
    monkeypatch.delenv("DLPIPE_API_TOKEN")
    cli.serve(task="all", host="0.0.0.0")
    assert "warning: serving on 0.0.0.0 without DLPIPE_API_TOKEN" in capsys.readouterr().err
    cli.serve(task="all")
    assert "warning" not in capsys.readouterr().err and len(calls) == 2


def test_info_shows_no_path_of_the_host() -> None:
    from serving.service import public_source
    from tests.helpers.serving import toy_tasks

    assert public_source("/srv/models/artifacts/tabular") == "tabular"
    assert public_source("models:/tabular@champion") == "models:/tabular@champion"
    task = toy_tasks()["tabular"]
    task.bundle = task.bundle.__class__(b"", task.meta, "/home/alice/dlpipe/artifacts/tabular")
    assert task.info({})["source"] == "tabular"
