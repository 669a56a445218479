"""Image serving: a real `bentoml serve serving.app:Service` on `models:/digits@champion`, checked against
onnxruntime run directly on the same preprocessing, and every kind of bad upload answered 4xx by name."""

from __future__ import annotations

import http.server
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import httpx
import numpy as np
import pytest
from PIL import Image

from components.data.images import ImageError
from serving import cli, families, schemas
from serving.bundle import load_bundle

ROOT = Path(__file__).resolve().parents[1]


def _png(pixels: np.ndarray, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, mode).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def digits(digits_artifacts: Path) -> tuple[dict, np.ndarray, np.ndarray]:
    """meta and the test split as raw 0..255 pixels [N, 1, 8, 8] with labels."""
    meta = load_bundle("digits", model_dir=digits_artifacts).meta
    with np.load(digits_artifacts / "data" / "test.npz") as data:
        return meta, data["x"], data["y"]


def test_preprocessing_matches_training(digits_artifacts: Path, digits) -> None:
    from components.data.images import normalise
    from components.data.splits import load_split

    meta, raw, _ = digits
    x, _ = load_split(digits_artifacts / "data", "test")
    # the service sends 0..255 pixels; the graph's first op normalises them as prepare did for training
    served = schemas.image_from_array(raw[:256], meta)
    assert served.dtype == np.float32 and served.max() > 1
    np.testing.assert_allclose(normalise(served, meta.preprocessing), x[:256], atol=1e-6)
    uploaded = schemas.image_from_upload(_png(raw[0, 0]), meta)
    np.testing.assert_allclose(normalise(uploaded, meta.preprocessing), x[:1], atol=1e-6)
    big = np.asarray(Image.fromarray(raw[0, 0]).resize((32, 32), Image.Resampling.NEAREST))
    assert schemas.image_from_array(big, meta).shape == (1, 1, 8, 8)  # another size: resized
    with pytest.raises(ImageError, match="expects 1 channel"):
        schemas.image_from_array(np.zeros((3, 8, 8)), meta)
    best = schemas.top_k(np.array([[0.1, 0.6, 0.3]]), meta.model_copy(update={"classes": ["a", "b", "c"]}), 2)[0]
    assert [(c.label, c.probability) for c in best] == [("b", 0.6), ("c", 0.3)]


def test_image_tasks_get_the_image_family(monkeypatch: pytest.MonkeyPatch, digits_artifacts: Path) -> None:
    """The registry's champion (read without its graphs, as the CLI reads it) and the export are kind image."""
    calls: list[list[str]] = []
    monkeypatch.setattr(cli.os, "execve", lambda exe, argv, env: calls.append(argv))
    cli.serve(task="digits")
    assert calls[0][4] == "serving.app:Service"
    assert cli._check("digits", None, None) == "image"
    assert families.family_of(load_bundle("digits", model_dir=digits_artifacts)).name == "image"


@pytest.fixture(scope="module")
def served(digits_served: tuple[str, Path]) -> tuple[str, int, Path]:
    """The session's digits service: its URL, where its log stood when this module began, and the log file."""
    url, log = digits_served
    return url, log.stat().st_size, log


@pytest.fixture(scope="module")
def server(served: tuple[str, int, Path]) -> str:
    return served[0]


def test_upload_and_json_match_onnxruntime(server: str, digits_artifacts: Path, digits) -> None:
    from components.release.export import run_onnx

    meta, raw, y = digits
    expected = run_onnx(digits_artifacts / "model.onnx", {"image": schemas.image_from_array(raw[:20], meta)})[0]
    with httpx.Client(base_url=server, timeout=20) as http:
        for i in range(3):
            response = http.post("/predict_image", files={"file": ("d.png", _png(raw[i, 0]), "image/png")})
            assert response.status_code == 200, response.text
            top = response.json()
            assert len(top) == 3 and top[0]["index"] == int(expected[i].argmax())
            assert top[0]["label"] == meta.classes[top[0]["index"]]
            assert top[0]["probability"] == pytest.approx(float(expected[i].max()), abs=1e-5)
        answer = http.post("/predict", json={"images": [{"pixels": p.tolist(), "top_k": 1} for p in raw[:20]]}).json()
        assert [a[0]["index"] for a in answer] == expected.argmax(1).tolist()
        rgb_big = np.repeat(np.asarray(Image.fromarray(raw[0, 0]).resize((40, 40)))[..., None], 3, axis=2)
        response = http.post("/predict_image", files={"file": ("big.png", _png(rgb_big, "RGB"), "image/png")})
        assert response.status_code == 200, response.text  # RGB -> grayscale, 40x40 -> 8x8


def test_concurrent_uploads_are_batched(server: str, digits) -> None:
    _, raw, _ = digits
    with httpx.Client(base_url=server, timeout=30) as http:

        def one(i: int) -> int:
            r = http.post("/predict_image", files={"file": ("d.png", _png(raw[i, 0]), "image/png")}, data={"top_k": 1})
            assert r.status_code == 200, r.text
            return r.json()[0]["index"]

        with ThreadPoolExecutor(8) as pool:
            single = list(pool.map(one, range(40)))
        together = http.post("/predict", json={"images": [{"pixels": p.tolist(), "top_k": 1} for p in raw[:40]]}).json()
        assert single == [a[0]["index"] for a in together]
        assert 'bentoml_service_adaptive_batch_size_count{method_name="infer"' in http.get("/metrics").text


def _bomb() -> bytes:
    return _png(np.zeros((10_000, 10_000), np.uint8))


@pytest.mark.parametrize(
    ("case", "status", "needle"),
    [
        ("text file", 415, "not a PNG or JPEG"),
        ("truncated PNG", 400, "truncated"),
        ("10000x10000 image", 413, "too large"),
        ("GIF", 415, "unsupported image format GIF"),
        ("3 channels in JSON", 400, "expects 1 channel(s), got 3"),
        ("ragged JSON", 400, "pixels"),
        ("pixel out of range", 400, "0 to 255"),
        ("top_k too big", 400, "top_k"),
        ("a batch in one item", 400, "one image per item"),
    ],
)
def test_bad_input_gets_4xx_naming_the_problem(case: str, status: int, needle: str, server: str, digits) -> None:
    _, raw, _ = digits
    good, good_item = _png(raw[0, 0]), {"pixels": raw[1, 0].tolist()}  # a bad image's neighbour in its request
    gif = io.BytesIO()
    Image.fromarray(raw[0, 0]).save(gif, "GIF")
    upload = {
        "text file": b"hello, not an image",
        "truncated PNG": _png(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8))[:300],
        "10000x10000 image": _bomb() if case == "10000x10000 image" else b"",
        "GIF": gif.getvalue(),
    }
    as_json = {
        "3 channels in JSON": {"pixels": np.zeros((3, 8, 8)).tolist()},
        "ragged JSON": {"pixels": [[1, 2], [3]]},
        "pixel out of range": {"pixels": (raw[0, 0].astype(int) + 300).tolist()},
        "top_k too big": {"pixels": raw[0, 0].tolist(), "top_k": 11},
        "a batch in one item": {"pixels": raw[:2].tolist()},
    }
    if case in upload:
        response = httpx.post(f"{server}/predict_image", files={"file": ("x", upload[case])}, timeout=30)
    else:
        response = httpx.post(f"{server}/predict", json={"images": [good_item, as_json[case]]}, timeout=30)
    assert response.status_code == status, response.text[:300]
    assert needle in response.text, response.text[:300]
    assert httpx.post(f"{server}/predict_image", files={"file": ("d.png", good)}, timeout=10).status_code == 200


class _Listener(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(_png(np.zeros((8, 8), np.uint8)))

    def log_message(self, *args: object) -> None:
        pass


def test_a_file_field_given_as_text_is_refused_and_nothing_is_fetched(server: str) -> None:
    """BentoML fetches a multipart `file` field given as text as a URL: `file:///etc/passwd` was a 500, a public
    host's URL was downloaded by the server (around the body limit). A listener on loopback shows nothing is
    fetched (BentoML blocks loopback by IP, not the names that resolve to it)."""
    listener = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Listener)
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    port = listener.server_address[1]
    try:
        urls = ["file:///etc/passwd", f"http://127.0.0.1:{port}/a.png", f"http://localhost:{port}/b.png"]
        for url in urls:
            answer = httpx.post(f"{server}/predict_image", files={"file": (None, url)}, timeout=10)
            assert answer.status_code == 400, answer.text[:300]
            assert "must be an uploaded file" in answer.json()["error"], answer.text[:300]
    finally:
        listener.shutdown()
    assert _Listener.hits == []


def test_numbers_that_overflow_are_400s_with_the_request_id(server: str, digits) -> None:
    """A 400-digit integer as a pixel was a 500 (OverflowError out of numpy); a 5,000-digit top_k in a form was
    a 500 (Python's JSON parser refuses it with a ValueError)."""
    _, raw, _ = digits
    huge = json.dumps({"images": [{"pixels": raw[0, 0].tolist()}]}).replace("0", "9" * 400, 1)
    answer = httpx.post(f"{server}/predict", content=huge, headers={"content-type": "application/json"}, timeout=10)
    assert answer.status_code == 400 and "pixels" in answer.text, answer.text[:300]
    assert answer.json()["request_id"] == answer.headers["x-request-id"]
    upload = {"file": ("d.png", _png(raw[0, 0]), "image/png")}
    for top_k, needle in (("9" * 5000, "top_k"), ("9" * 400, "top_k")):
        answer = httpx.post(f"{server}/predict_image", files=upload, data={"top_k": top_k}, timeout=10)
        assert answer.status_code == 400 and needle in answer.text, answer.text[:300]
        assert answer.json()["request_id"] == answer.headers["x-request-id"]


def test_the_playground_is_served_with_security_headers(server: str) -> None:
    page = httpx.get(f"{server}/playground/", timeout=10)
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["x-frame-options"] == "DENY"
    assert "/" not in httpx.get(f"{server}/info", timeout=10).json()["source"].removeprefix("models:/")


def test_refused_requests_log_one_line_each_not_a_traceback(served: tuple[str, int, Path]) -> None:
    """Runs after the module's bad-input tests (what the log holds from them on is read): BentoML logged a full
    traceback for each 400."""
    url, start, log = served
    for _ in range(3):
        assert httpx.post(f"{url}/predict", json={"images": []}, timeout=10).status_code == 400
    time.sleep(0.5)
    with log.open("rb") as file:
        file.seek(start)
        text = file.read().decode()
    for traceback_of_a_4xx in ("ValidationError", "bentoml.exceptions."):  # the last line of such a traceback
        assert traceback_of_a_4xx not in text, text[-3000:]
    assert text.count('"logger": "dlpipe.refused"') >= 3
