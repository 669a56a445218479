"""Request and response models derived from meta.json, without a server."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from serving import schemas
from tests.helpers.serving import toy_meta

META = toy_meta(
    feature_names=["mean radius", "json", "x"],
    classes=["no", "yes"],
    scaler={"mean": [1.0, 2.0, 3.0], "scale": [2.0, 4.0, 0.5]},
)


def _errors(model: type[schemas.FeatureRecord], payload: str) -> list[tuple[tuple, str, str]]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate_json(payload)
    return [(e["loc"], e["type"], e["msg"]) for e in caught.value.errors()]


def test_record_model_orders_raw_values_as_meta_and_names_bad_fields() -> None:
    rec = schemas.record_model(META)
    good = [
        rec.model_validate({"x": 3.5, "json": 6, "mean radius": 5}),
        rec.model_validate_json('{"mean radius": 1, "json": 2, "x": 3}'),
    ]
    np.testing.assert_allclose(rec.matrix(good), [[5.0, 6.0, 3.5], [1.0, 2.0, 3.0]])  # raw: the graph scales
    assert rec.matrix(good).dtype == np.float32
    assert rec.model_json_schema()["properties"]["mean radius"]["examples"] == [1.0]

    base = '{"mean radius": 1, "json": 2, "x": 3'
    assert _errors(rec, '{"json": 2, "x": 3}') == [(("mean radius",), "missing", "Field required")]
    assert _errors(rec, base + ', "f0": 1}')[0][:2] == (("f0",), "extra_forbidden")
    assert _errors(rec, '{"mean radius": "1.5", "json": 2, "x": 3}')[0][:2] == (("mean radius",), "float_type")
    assert _errors(rec, '{"mean radius": true, "json": 2, "x": 3}')[0][:2] == (("mean radius",), "float_type")
    assert _errors(rec, '{"mean radius": NaN, "json": 2, "x": 3}')[0][:2] == (("mean radius",), "finite_number")
    assert _errors(rec, '{"mean radius": 1e999, "json": 2, "x": 3}')[0][:2] == (("mean radius",), "finite_number")
    overflow = _errors(rec, '{"mean radius": 1, "json": 2, "x": 2e38}')
    assert overflow[0][1] == "value_error" and overflow[0][2].endswith("after scaling): x")


def test_decode_per_objective() -> None:
    binary = schemas.decode(np.array([[0.2, 0.8], [0.9, 0.1]], np.float32), META)
    assert [(p.label, round(p.probability, 6)) for p in binary] == [("yes", 0.8), ("no", 0.9)]
    assert binary[0].probabilities == pytest.approx({"no": 0.2, "yes": 0.8})
    multi = schemas.decode(
        np.array([[0.1, 0.3, 0.6]], np.float32), META.model_copy(update={"classes": ["a", "b", "c"]})
    )
    assert multi[0].label == "c" and list(multi[0].probabilities) == ["a", "b", "c"]
    regression = META.model_copy(update={"objective": "regression", "classes": None})
    assert schemas.decode(np.array([[151.5]], np.float32), regression)[0].prediction == 151.5
    assert schemas.prediction_model(regression) is schemas.RegressionPrediction
