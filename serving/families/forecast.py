"""Forecasting tasks (kind series): `POST /forecast`, histories in, the next H values out.

Each request is validated on its own (serving/schemas.py: minimum history, finite numbers) before it joins
an adaptive batch, so a bad series never reaches the model nor fails a neighbour's request.
Run: `dlpipe serve --task forecast` (serving/app.py).
"""

# No `from __future__ import annotations`: BentoML reads the endpoint's annotations, built here at run time.
from typing import Annotated, Any

from pydantic import Field

from serving import schemas, service, telemetry
from serving.bundle import Bundle
from serving.session import make_session


class ForecastTask(service.Task):
    family = "forecast"

    def __init__(self, bundle: Bundle) -> None:
        super().__init__(bundle)
        self.series = schemas.history_model(self.meta)

    def details(self) -> dict[str, Any]:
        rules = {k: self.meta.series[k] for k in ("min_history", "history_rule", "freq")}
        return {"horizon": self.meta.horizon, **rules, "max_series": schemas.MAX_ITEMS}

    def load(self) -> None:
        self.session = make_session(self.bundle, self.threads)

    def warm_up(self) -> None:
        self.forecast([self.series(history=[self.meta.scaler["mean"][0]] * self.meta.series["window"])])

    def forecast(self, series: list[Any]) -> list[schemas.Forecast]:
        x = schemas.forecast_input(series, self.meta)
        out = self.session.run([self.meta.output.name], {self.meta.input.name: x})[0]
        return [schemas.Forecast(forecast=row.tolist(), horizon=len(row), history_used=x.shape[1]) for row in out]

    def apis(self) -> dict[str, service.Api]:
        Batch = Annotated[list[self.series], Field(min_length=1, max_length=schemas.MAX_ITEMS)]

        def forecast(_: Any, series: Batch) -> list[schemas.Forecast]:
            """The next H values of each series (`{"series": [{"history": [...]}, ...]}`), in its units."""
            telemetry.observe_batch(self.name, "forecast", len(series))
            return self.forecast(series)

        return {"forecast": service.Api(forecast, batchable=True)}
