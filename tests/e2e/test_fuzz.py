"""Hostile input: schemathesis generates at least 500 requests per service from its own `/docs.json` (valid
and invalid bodies, wrong types, odd encodings) against a real `bentoml serve` on loopback; not one may get a
5xx. bench/fuzz.py runs the same harness against every task's service."""

from __future__ import annotations

import httpx
import pytest

from bench.fuzz import fuzz

pytestmark = pytest.mark.slow  # about 60 s: two real services, at least 500 generated requests each

TASKS = ("tabular", "digits")  # a task's own service: serving.app, whatever its family
CASES = 500


@pytest.fixture(scope="module", params=TASKS)
def served(request: pytest.FixtureRequest) -> str:
    """The task's champion (trained and registered) behind the session's real `bentoml serve` of it."""
    return request.getfixturevalue(f"{request.param}_served")[0]


def test_generated_requests_never_get_a_server_error(served: str) -> None:
    report = fuzz(served, CASES)
    assert report.server_errors == [], "\n".join(report.server_errors[:5])
    assert report.cases >= CASES, report.statuses
    assert report.count(200) > 0 and report.count(400) > 0, report.statuses  # both kinds were really sent


def test_malformed_multipart_body_is_a_client_error(served: str) -> None:
    """BentoML answered 500 to this on upload routes (Starlette's 400 swallowed); JSON routes say 415."""
    route = "/predict_image" if "predict_image" in httpx.get(f"{served}/docs.json").text else "/predict"
    body = b"--abc\r\n[]--abc--\r\n"
    response = httpx.post(served + route, content=body, headers={"Content-Type": "multipart/form-data; boundary=abc"})
    assert response.status_code in (400, 415) and "error" in response.json(), response.text
