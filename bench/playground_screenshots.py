"""Screenshots of the playground page for the README (docs/playground-<task>.png): the gateway serving the
tasks' exports (artifacts/<task>, after `make run`) in headless Chromium, each card used as a person would: a
digit drawn, a test-split garment uploaded, the tabular form sent, a sentence classified, a prompt continued,
a series forecast.

    python bench/playground_screenshots.py                      # every task with an export
    python bench/playground_screenshots.py --tasks digits fashion
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from bench import servers

DOCS = servers.ROOT / "docs"
TASKS = ["digits", "fashion", "tabular", "forecast", "sentiment", "decoder"]


def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not (binary and driver):
        raise SystemExit("needs Chromium and chromedriver on PATH (`make browser` installs Debian's)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=760,1600"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(driver))


def use(browser, card, task: str, model_dir: Path, tmp: Path) -> None:
    """Do what a visitor would with the task's card, and wait for the answer."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    find = lambda css: card.find_element(By.CSS_SELECTOR, css)  # noqa: E731
    if task == "digits":  # a "7": a bar, then the diagonal
        path = ActionChains(browser).move_to_element_with_offset(find("canvas.draw"), -70, -80).click_and_hold()
        path.move_by_offset(70, 0).move_by_offset(70, 0).move_by_offset(-45, 80).move_by_offset(-40, 80)
        path.release().perform()
    elif task in ("fashion", "mnist"):
        with np.load(model_dir / "data" / "test.npz") as data:
            Image.fromarray(data["x"][0, 0]).resize((112, 112)).save(tmp / "upload.png")
        find("input.upload").send_keys(str(tmp / "upload.png"))
    elif task.startswith("tabular"):
        WebDriverWait(browser, 10).until(lambda _: find("form.features input").get_attribute("value"))
        find("button.predict").click()
    elif task in ("sentiment", "encoder"):
        find("button.classify").click()
    elif task == "decoder":
        find("textarea.prompt").clear()
        find("textarea.prompt").send_keys("ROMEO:\n")
        find("button.generate").click()
    elif task == "forecast":
        from components.core.contract import load_meta

        meta = load_meta(model_dir / "data")
        with np.load(model_dir / "data" / "test.npz") as data:  # two consecutive windows: two years of weeks
            window = meta.series["window"]
            x = np.concatenate([data["x"][0, :, 0], data["x"][window, :, 0]])
        raw = x * meta.target_scaler["scale"] + meta.target_scaler["mean"]
        find("textarea.series").clear()
        find("textarea.series").send_keys(", ".join(f"{v:.2f}" for v in raw))
        find("button.forecast").click()
    result = find(".result")
    WebDriverWait(browser, 60).until(lambda _: result.get_attribute("class") in ("result ok", "result error"))


def main() -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--artifacts", type=Path, default=servers.ARTIFACTS, help="folder of <task>/ exports")
    args = parser.parse_args()
    tasks = [t for t in args.tasks if servers.export_of(t, args.artifacts)]
    for task in sorted(set(args.tasks) - set(tasks)):
        print(f"{task}: skipped, no {args.artifacts}/{task}/model.onnx (`make run`)")
    DOCS.mkdir(exist_ok=True)
    browser = chromium()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="dlpipe-shots-") as tmp,
            servers.gateway(tasks, args.artifacts, Path(tmp)) as server,
        ):
            browser.get(f"{server.url}/playground/")
            WebDriverWait(browser, 30).until(
                lambda d: len(d.find_elements(By.CSS_SELECTOR, "section.card")) == len(tasks)
            )
            for task in tasks:
                card = browser.find_element(By.CSS_SELECTOR, f'section[data-task="{task}"]')
                browser.execute_script("arguments[0].scrollIntoView()", card)
                use(browser, card, task, args.artifacts / task, Path(tmp))
                out = DOCS / f"playground-{task}.png"
                browser.execute_script(
                    "arguments[0].scrollIntoView()", card
                )  # it grew: a screenshot stops at the window
                card.screenshot(str(out))
                answer = card.find_element(By.CSS_SELECTOR, ".result").text.replace("\n", " ")
                print(f"{task}: {out.relative_to(servers.ROOT)} ({answer[:80]!r})")
    finally:
        browser.quit()


if __name__ == "__main__":
    main()
