"""The playground page (serving/playground/) in headless Chromium against real `bentoml serve` processes: a
stroke drawn on the canvas and an uploaded digit get top-k classes, the tabular form gets a probability, and
what the page shows is what the HTTP API answers for the same input."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import NEEDS_CHROMIUM
from tests.helpers.playground import open_card

pytestmark = NEEDS_CHROMIUM


@pytest.fixture(scope="module")
def digits_url(digits_served: tuple[str, Path]) -> str:
    return digits_served[0]


@pytest.fixture(scope="module")
def tabular_url(tabular_served: tuple[str, Path]) -> str:
    return tabular_served[0]


def shown(browser, card) -> list[tuple[str, float]]:
    """Wait for the card's answer: its (label, percent) rows; fail with the error it shows instead."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    result = card.find_element(By.CSS_SELECTOR, ".result")
    WebDriverWait(browser, 30).until(lambda _: result.get_attribute("class") in ("result ok", "result error"))
    assert result.get_attribute("class") == "result ok", result.text
    rows = result.find_elements(By.CSS_SELECTOR, ".bar")
    return [
        (r.find_element(By.CLASS_NAME, "label").text, float(r.find_element(By.CLASS_NAME, "probability").text[:-1]))
        for r in rows
    ]


def percents(probabilities: dict[str, float]) -> list[tuple[str, float]]:
    """What the page should show for an API answer: most probable first, in percent (to 0.1)."""
    ranked = sorted(probabilities.items(), key=lambda kv: -kv[1])
    return [(label, pytest.approx(100 * p, abs=0.051)) for label, p in ranked]


def test_drawn_stroke_and_uploaded_digit_get_top_k(browser, digits_url: str, digits_artifacts: Path, tmp_path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    classes = [str(d) for d in range(10)]
    card = open_card(browser, digits_url, "digits")
    canvas = card.find_element(By.CSS_SELECTOR, "canvas.draw")
    stroke = ActionChains(browser).move_to_element_with_offset(canvas, -10, -90).click_and_hold()
    stroke.move_by_offset(10, 60).move_by_offset(0, 60).move_by_offset(0, 60).release().perform()
    top = shown(browser, card)
    assert len(top) == 3 and all(label in classes for label, _ in top)
    assert [p for _, p in top] == sorted((p for _, p in top), reverse=True) and 0 < top[0][1] <= 100

    with np.load(digits_artifacts / "data" / "test.npz") as data:
        pixels = data["x"][0, 0]
    png = tmp_path / "digit.png"
    Image.fromarray(pixels, "L").resize((64, 64)).save(png)
    card.find_element(By.CSS_SELECTOR, "button.clear").click()  # empties the answer
    card.find_element(By.CSS_SELECTOR, "input.upload").send_keys(str(png))
    top_upload = shown(browser, card)
    answer = httpx.post(f"{digits_url}/predict_image", files={"file": png.read_bytes()}, timeout=20).json()
    assert top_upload == percents({a["label"]: a["probability"] for a in answer})


def test_tabular_form_gets_a_probability_and_errors_read_plainly(browser, tabular_url: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    card = open_card(browser, tabular_url, "tabular")
    inputs = card.find_elements(By.CSS_SELECTOR, "form.features input")
    assert len(inputs) == 30
    WebDriverWait(browser, 10).until(lambda _: all(i.get_attribute("value") for i in inputs))  # the means
    record = {i.get_attribute("name"): float(i.get_attribute("value")) for i in inputs}
    card.find_element(By.CSS_SELECTOR, "button.predict").click()
    rows = shown(browser, card)
    [answer] = httpx.post(f"{tabular_url}/predict", json={"records": [record]}, timeout=20).json()
    assert rows == percents(answer["probabilities"])

    inputs[0].clear()
    card.find_element(By.CSS_SELECTOR, "button.predict").click()
    result = card.find_element(By.CSS_SELECTOR, ".result")
    WebDriverWait(browser, 20).until(lambda _: result.get_attribute("class") == "result error")
    assert result.text == "HTTP 400: records.0.mean radius: Field required"
