"""Tabular tasks (kind tabular): `POST /predict`, named raw features in, class probabilities or a value out.

The request schema is built from the bundle's meta.json (real feature names, training means as examples);
each request is validated on its own before BentoML joins it to an adaptive batch, so the model only ever
sees clean rows. Run: `dlpipe serve --task tabular_wine` (serving/app.py).
"""

# No `from __future__ import annotations`: BentoML reads the endpoint's annotations, built here at run time.
from typing import Annotated, Any

from pydantic import Field

from serving import schemas, service, telemetry
from serving.bundle import Bundle
from serving.session import make_session

MAX_ROWS = 1000  # per request; bigger jobs belong in batch scoring, not in one HTTP body


class TabularTask(service.Task):
    family = "tabular"

    def __init__(self, bundle: Bundle) -> None:
        super().__init__(bundle)
        self.record = schemas.record_model(self.meta)

    def details(self) -> dict[str, Any]:
        keys = ("objective", "classes", "feature_names")
        return {k: getattr(self.meta, k) for k in keys} | {"max_rows": MAX_ROWS}

    def load(self) -> None:
        self.session = make_session(self.bundle, self.threads)

    def warm_up(self) -> None:
        mean = self.meta.scaler["mean"]
        self.score([self.record.model_validate(dict(zip(self.meta.feature_names, mean, strict=True)))])

    def score(self, records: list[Any]) -> list[Any]:
        x = self.record.matrix(records)
        output = self.session.run([self.meta.output.name], {self.meta.input.name: x})[0]
        return schemas.decode(output, self.meta)

    def apis(self) -> dict[str, service.Api]:
        Records = Annotated[list[self.record], Field(min_length=1, max_length=MAX_ROWS)]
        Prediction = schemas.prediction_model(self.meta)

        def predict(_: Any, records: Records) -> list[Prediction]:
            """Score records of raw feature values (the model applies the training scaling in its graph)."""
            telemetry.observe_batch(self.name, "predict", len(records))
            return self.score(records)

        return {"predict": service.Api(predict, batchable=True)}
