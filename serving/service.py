"""How every dlpipe service is made, for one task or for many: a family module describes one task's endpoints
as a `Task` (its typed API functions over its model bundle); `build` turns a list of tasks into one BentoML
service. A task's own service is `build([task])` with its routes at the root (`POST /predict`); the gateway
is `build(tasks, prefixed=True)`, each task's routes under `/<task>/`, so both serve exactly the same
request and response schemas, batching settings, timeouts, /info and guard.

Every service gets: adaptive batching from the task's settings (serving/settings.py `SETTINGS`), a warm-up
call of each model before the service reports ready, `GET /info` (or `/<task>/info` and `GET /tasks`),
the playground page at `/playground/`, the guard (serving/guard.py), BentoML's access log replaced by the
guard's JSON one, and a bind on 127.0.0.1 unless `--host` (or $BENTOML_HOST) says otherwise.

Slow work cannot stall the rest: BentoML runs every synchronous endpoint of a worker in one thread pool,
one thread by default, so one long generation queued everything behind it (other routes, and in the
gateway every other task). The pool here has a thread for each long request a route may hold
(`Settings.max_in_flight_long`, the guard's limit for long routes) plus `SHORT_THREADS` for the rest.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import bentoml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from serving import guard, settings, telemetry
from serving.bundle import Bundle
from serving.session import ort_threads

PLAYGROUND = Path(__file__).parent / "playground"
SHORT_THREADS = 4  # threads of a worker's pool for its short calls, beside one per long request allowed


@dataclass
class Api:
    """One endpoint of a task: `func(service, **typed request fields) -> typed answer`; `batchable` endpoints
    take and return lists that BentoML joins across requests; `body` is the Content-Type it takes; `long`
    ones (a generation: seconds of work per request) get the task's `max_in_flight_long` limit."""

    func: Callable[..., Any]
    batchable: bool = False
    body: str = "application/json"
    long: bool = False


class Task:
    """One served task: its bundle, settings and endpoints. Subclasses (one per family) open their sessions in
    `load` (in the serving process, not at import) and make one real call in `warm_up`."""

    family: ClassVar[str]

    def __init__(self, bundle: Bundle) -> None:
        self.bundle, self.meta, self.name = bundle, bundle.meta, bundle.meta.task
        self.settings = settings.for_task(self.name, self.family)
        self.workers = self.settings.worker_count()
        self.threads = ort_threads(self.workers)  # for the sessions its workers open
        self.ready = False

    def apis(self) -> dict[str, Api]:
        raise NotImplementedError

    def details(self) -> dict[str, Any]:
        """The family's own /info fields (classes, limits, preprocessing)."""
        return {}

    def load(self) -> None:
        """Open the ONNX Runtime sessions this process serves from."""

    def warm_up(self) -> None:
        """One real model call, so the first client does not pay for ONNX Runtime's lazy set-up."""

    def dependencies(self) -> dict[str, Any]:
        """Services this task's endpoints call (attribute name -> service), e.g. a separately batched model."""
        return {}

    def start(self) -> None:
        self.load()
        self.warm_up()
        self.ready = True

    def batching(self) -> dict[str, int]:
        return {"max_batch_size": self.settings.max_batch_size, "max_latency_ms": self.settings.max_latency_ms}

    def limit(self, api: Api) -> int:
        return self.settings.max_in_flight_long if api.long else self.settings.max_in_flight

    def info(self, schemas: dict[str, Any]) -> dict[str, Any]:
        base = {"task": self.name, "family": self.family, "source": public_source(self.bundle.source)}
        base |= {"version": self.bundle.version, "metrics": self.bundle.metrics, "input_schema": schemas}
        return base | self.details()


def build(tasks: list[Task], name: str | None = None, prefixed: bool = False) -> Any:
    """One BentoML service serving `tasks`: routes `/<endpoint>` (one task) or `/<task>/<endpoint>`."""
    if not tasks or (len(tasks) > 1 and not prefixed):
        raise ValueError("one task at the root, or any number of tasks under their prefixes")
    guard.api_token()  # an empty $DLPIPE_API_TOKEN fails the start here, before any model loads
    if warning := guard.exposure_warning(os.environ.get("BENTOML_HOST") or "127.0.0.1"):
        telemetry.configure_json_logs()
        logging.getLogger("dlpipe.guard").warning(warning)
    namespace: dict[str, Any] = {}
    routes: dict[str, guard.Route] = {}
    endpoints: dict[str, dict[str, str]] = {}  # task -> route -> API attribute
    threads = SHORT_THREADS
    for task in tasks:
        namespace |= {attr: bentoml.depends(on) for attr, on in task.dependencies().items()}
        base = f"/{task.name}" if prefixed else ""
        for api_name, api in task.apis().items():
            attr = f"{task.name}_{api_name}" if prefixed else api_name
            api.func.__name__ = api.func.__qualname__ = attr  # BentoML names the API after its function
            batching = {"batchable": True, **task.batching()} if api.batchable else {}
            namespace[attr] = method = bentoml.api(route=f"{base}/{api_name}", **batching)(api.func)
            files = frozenset(method.input_spec.multipart_fields)
            routes[f"{base}/{api_name}"] = guard.Route(task.name, api.body, files, task.limit(api))
            endpoints.setdefault(task.name, {})[f"{base}/{api_name}"] = attr
            threads += task.limit(api) if api.long else 0
        routes[f"{base}/info"] = guard.Route(task.name, body=None)

    def __init__(self: Any) -> None:
        for task in tasks:
            task.start()
        # Garbage collection: the full collections would scan the ~300,000 objects of the imports (BentoML,
        # pydantic, ONNX Runtime) every second under load, pausing all requests ~130 ms; freeze them once.
        gc.freeze()

    def __is_ready__(self: Any) -> bool:
        return all(task.ready for task in tasks)

    if prefixed:  # the gateway: every task in one process, sized for one
        for task in tasks:
            task.workers, task.threads = 1, ort_threads(1)
    namespace |= {"__init__": __init__, "__is_ready__": __is_ready__}
    guard.patch_bentoml_timeout()
    telemetry.patch_bentoml_error_logs()
    cls = type(name or f"dlpipe_{tasks[0].name}", (), namespace)
    timeouts = {task.name: task.settings.timeout_s for task in tasks}
    svc = bentoml.service(
        name=name or f"dlpipe_{tasks[0].name}",
        workers=tasks[0].workers,
        threads=threads,
        traffic={"timeout": max(timeouts.values()) + 10},  # a backstop: the guard answers 504 first, per task
        logging={"access": {"enabled": False}},  # the guard writes the access log, as JSON with the request id
        http={"host": "127.0.0.1"},
        tracing=settings.tracing(),
    )(cls)
    _media_types_once(svc)

    @functools.cache
    def schemas(task_name: str) -> dict[str, Any]:
        apis = endpoints[task_name]
        return {route: svc.apis[attr].input_spec.model_json_schema() for route, attr in apis.items()}

    def info_of(task: Task) -> dict[str, Any]:
        return task.info(schemas(task.name))

    def info_route(task: Task) -> Route:
        async def info(_: Request) -> JSONResponse:
            return JSONResponse(info_of(task))

        return Route(f"/{task.name}/info" if prefixed else "/info", info, methods=["GET"])

    async def listing(_: Request) -> JSONResponse:
        return JSONResponse([{"task": t.name, "family": t.family, "info": info_of(t)} for t in tasks])

    pages: list[Any] = [info_route(task) for task in tasks]
    pages += [Route("/tasks", listing, methods=["GET"])] if prefixed else []
    pages += [Mount("/playground", StaticFiles(directory=PLAYGROUND, html=True))] if PLAYGROUND.is_dir() else []
    svc.mount_asgi_app(Starlette(routes=pages), path="/")
    svc.add_asgi_middleware(guard.Guard, routes=routes, timeouts=timeouts)
    return svc


def public_source(source: str) -> str:
    """A model source as /info shows it: a registry URI as it is, a local export by its folder's name only
    (an absolute path of the host tells a caller nothing it needs)."""
    return source if ":/" in source else Path(source).name


def model_service(task: Task, infer: Callable[..., Any], load: Callable[[], None]) -> Any:
    """A service of its own for a task's model (BentoML batches calls from other services only at an
    HTTP boundary): `infer(self, batch)` becomes its batchable `infer` API; `load()` runs at its start."""

    def __init__(self: Any) -> None:
        load()
        gc.freeze()

    infer.__name__ = infer.__qualname__ = "infer"
    namespace: dict[str, Any] = {"__init__": __init__}
    namespace["infer"] = bentoml.api(batchable=True, batch_dim=0, **task.batching())(infer)
    # BentoML's client of this service replaces its HTTP session every `max_requests` calls by closing the old
    # one under the calls still in flight on it: 500s ("Cannot write to closing transport") at concurrency 32.
    # The session is a local socket to one process; it never needs recycling.
    recycle = {"max_requests": 2**31 - 1, "max_age": 1e9}
    config = {"name": f"dlpipe_{task.name}_model", "workers": 1, "runner_connection": recycle}
    config |= {"logging": {"access": {"enabled": False}}}  # internal calls: the entry service logs each request
    svc = bentoml.service(**config, tracing=settings.tracing())(type(f"{task.name}_model", (), namespace))
    return _media_types_once(svc)


def _media_types_once(svc: Any) -> Any:
    """`svc` with each API's response media type worked out once: BentoML otherwise derives it from the
    output's JSON schema on every response (a quarter of a small model's request CPU)."""
    for api in svc.apis.values():
        api.output_spec.media_type = api.output_spec.mime_type()
    return svc
