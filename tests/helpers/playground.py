"""Driving the playground page in headless Chromium: open it on a service and find a task's card."""

from __future__ import annotations


def open_card(browser, url: str, task: str):
    """Load the page from the service and wait until it has discovered `task`; its card."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{url}/playground/")
    WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, f'section[data-task="{task}"]'))
    assert browser.find_element(By.ID, "status").text == f"Serving 1 model: {task}"
    return browser.find_element(By.CSS_SELECTOR, f'section[data-task="{task}"]')
