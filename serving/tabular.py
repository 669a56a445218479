"""BentoML service for tabular tasks (named raw features in, class probabilities or a value out).

The bundle is loaded at import because the request schema is built from its meta.json: DLPIPE_TASK
(default "tabular") and DLPIPE_MODEL_URI (default `models:/<task>@champion`) or DLPIPE_MODEL_DIR (an
artifacts/<task> folder). Run: `bentoml serve serving.tabular:Tabular` (or `dlpipe serve`).
"""

from __future__ import annotations

from typing import Annotated

import bentoml
from pydantic import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from serving import runtime
from serving.runtime import JSONOnly

MAX_ROWS = 1000  # per request; bigger jobs belong in batch scoring, not in one HTTP body

BUNDLE = runtime.bundle_from_env()
META = BUNDLE.meta
Record = runtime.record_model(META)
Prediction = runtime.prediction_model(META)
Records = Annotated[list[Record], Field(min_length=1, max_length=MAX_ROWS)]
INFO = {
    "task": META["task"],
    "source": BUNDLE.source,
    "objective": META["objective"],
    "classes": META["classes"],
    "feature_names": META["feature_names"],
    "max_rows": MAX_ROWS,
}


async def info(_: Request) -> JSONResponse:
    return JSONResponse(INFO)


@bentoml.asgi_app(runtime.mount_playground(Starlette(routes=[Route("/info", info, methods=["GET"])])), path="/")
@bentoml.service(name=f"dlpipe_{META['task']}", workers=1, traffic={"timeout": 30})
class Tabular:
    """ONNX Runtime on providers chosen explicitly; the saved scaling applied here, not by clients."""

    def __init__(self) -> None:
        self.session = runtime.make_session(BUNDLE)
        self.input_name, self.output_name = META["input"]["name"], META["output"]["name"]

    @bentoml.api(batchable=True, max_batch_size=MAX_ROWS, max_latency_ms=1000)
    def predict(self, records: Records) -> list[Prediction]:
        """Score records of raw feature values. Each request is validated on its own before it joins an
        adaptive batch, so the model only ever sees clean rows."""
        x = Record.matrix(records)
        output = self.session.run([self.output_name], {self.input_name: x})[0]
        return runtime.decode(output, META)


Tabular.add_asgi_middleware(JSONOnly)
