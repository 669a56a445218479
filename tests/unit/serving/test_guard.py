"""The guard's timeout: BentoML's middleware replaced by one that cancels its timer and still answers 504."""

from __future__ import annotations

import time
from typing import Any


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
