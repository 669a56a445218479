"""Every family's request validators, fuzzed with hostile numbers and shapes: whatever a client sends, the
validator answers with a pydantic ValidationError (BentoML's 400 naming the field) or accepts it; any other
exception would be a 500. Each leaf of a valid request of each endpoint is replaced in turn by each hostile value."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import bentoml
import pytest
from pydantic import ValidationError

from tests.helpers.serving import toy_tasks

BIG = "9" * 400
HOSTILE = [
    BIG,  # a 400-digit integer: beyond float64
    "-" + BIG,
    "9" * 5000,  # beyond Python's 4,300-digit limit for int(str)
    "1e400",
    "-1e400",
    "1e-400",
    "1" + "0" * 400 + ".5",
    "1.7976931348623157e308",
    "NaN",
    "-Infinity",
    "null",
    "true",
    '"9"',
    "[]",
    "{}",
    "[" * 200 + "]" * 200,
    f"[{BIG}]",
    f"[[{BIG}]]",
]
PIXELS = [[0, 255], [12, 3]]  # resized to the toy model's 8 x 8
VALID: dict[tuple[str, str], dict[str, Any]] = {
    ("tabular", "predict"): {"records": [{"mean radius": 1.5, "x": 2}]},
    ("image", "predict"): {"images": [{"pixels": PIXELS, "top_k": 1}]},
    ("forecast", "forecast"): {"series": [{"history": [1, 2.5, 3, 4]}]},
    ("text", "classify"): {"texts": ["a good film"]},
    ("encoder", "classify"): {"texts": ["a good film"]},
    ("encoder", "embed"): {"texts": ["a good film"], "pooling": "mean"},
    ("encoder", "attention"): {"text": "a good film"},
    ("decoder", "generate"): {"prompt": "AB", "max_new_tokens": 5, "temperature": 0.5, "top_k": 2, "top_p": 0.5},
    ("decoder", "generate_stream"): {"prompt": "AB", "max_new_tokens": 5, "seed": 3},
    ("decoder", "attention"): {"text": "AB"},
    ("seq2seq", "translate"): {"texts": ["12"]},
}
SENTINEL = "__hostile__"


def _input_models() -> Iterator[tuple[str, type]]:
    for family, task in toy_tasks().items():
        for name, api in task.apis().items():
            if api.body == "application/json":
                yield f"{family}/{name}", bentoml.api(batchable=api.batchable)(api.func).input_spec


MODELS = dict(_input_models())


def _leaves(value: Any, path: tuple = ()) -> Iterator[tuple]:
    """Paths of every value in a JSON document (containers included: a whole list can be replaced too)."""
    if path:
        yield path
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, child in children:
        yield from _leaves(child, (*path, key))


def _with(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _with(value[path[0]], path[1:], new)
    return copy


def _mutants(valid: dict[str, Any]) -> Iterator[str]:
    """JSON texts of `valid` with one value (or container) replaced by one hostile token."""
    for path in _leaves(valid):
        template = json.dumps(_with(valid, path, SENTINEL))
        for token in HOSTILE:
            yield template.replace(json.dumps(SENTINEL), token)


def test_every_json_endpoint_of_every_family_is_fuzzed() -> None:
    assert set(MODELS) == {"/".join(key) for key in VALID}


@pytest.mark.parametrize("endpoint", sorted(MODELS))
def test_hostile_values_are_validation_errors_never_crashes(endpoint: str) -> None:
    """A 400-digit integer as a pixel (OverflowError in numpy) was a 500 on /predict of the image family."""
    model, valid = MODELS[endpoint], VALID[tuple(endpoint.split("/"))]
    checked = 0
    for text in _mutants(valid):
        with contextlib.suppress(ValidationError):
            model.model_validate_json(text)
        try:
            document = json.loads(text)
        except ValueError:  # a 5,000-digit integer: Python's json refuses it (the guard answers 400 for forms)
            continue
        with contextlib.suppress(ValidationError):  # as Python objects: what BentoML validates for form fields
            model.model_validate(document)
        checked += 1
    assert checked == len(list(_leaves(valid))) * (len(HOSTILE) - 1)  # all but the 5,000-digit integer


def test_a_huge_pixel_is_a_400_naming_the_pixels() -> None:
    text = json.dumps({"images": [{"pixels": [[1] * 8] * 8}]}).replace("1", BIG, 1)
    with pytest.raises(ValidationError, match="pixels: int too large to convert to float"):
        MODELS["image/predict"].model_validate_json(text)
