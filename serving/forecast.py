"""BentoML service for forecasting tasks: `POST /forecast` (histories in, the next H values out).

The bundle comes from DLPIPE_TASK (default "forecast") and DLPIPE_MODEL_URI / DLPIPE_MODEL_DIR. Each
request is validated on its own (serving/sequence.py: minimum history, finite numbers) before it joins an
adaptive batch, so a bad series never reaches the model nor fails a neighbour's request.
Run: `bentoml serve serving.forecast:Forecaster` (or `dlpipe serve --task forecast`).
"""

from __future__ import annotations

from typing import Annotated

import bentoml
from pydantic import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from serving import runtime, sequence

BUNDLE = runtime.bundle_from_env(default_task="forecast")
META = BUNDLE.meta
Series = sequence.history_model(META)
Batch = Annotated[list[Series], Field(min_length=1, max_length=sequence.MAX_ITEMS)]
INFO = {
    "task": META["task"],
    "source": BUNDLE.source,
    "horizon": META["horizon"],
    "min_history": META["series"]["min_history"],
    "history_rule": META["series"]["history_rule"],
    "freq": META["series"]["freq"],
    "max_series": sequence.MAX_ITEMS,
}


async def info(_: Request) -> JSONResponse:
    return JSONResponse(INFO)


@bentoml.asgi_app(runtime.mount_playground(Starlette(routes=[Route("/info", info, methods=["GET"])])), path="/")
@bentoml.service(name=f"dlpipe_{META['task']}", workers=1, traffic={"timeout": 30})
class Forecaster:
    def __init__(self) -> None:
        self.session = runtime.make_session(BUNDLE)
        self.input_name, self.output_name = META["input"]["name"], META["output"]["name"]

    @bentoml.api(batchable=True, max_batch_size=sequence.MAX_ITEMS, max_latency_ms=1000)
    def forecast(self, series: Batch) -> list[sequence.Forecast]:
        """The next H values of each series (`{"series": [{"history": [...]}, ...]}`), in its units."""
        x = sequence.forecast_input(series, META)
        out = self.session.run([self.output_name], {self.input_name: x})[0]
        used = x.shape[1]
        return [sequence.Forecast(forecast=row.tolist(), horizon=len(row), history_used=used) for row in out]


Forecaster.add_asgi_middleware(sequence.Utf8Json)
