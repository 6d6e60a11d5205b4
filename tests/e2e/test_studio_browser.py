"""An artist paints from the studio page in a real browser, on the real server and model."""

from __future__ import annotations

import time
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def test_painting_from_the_studio_shows_live_progress_then_the_image(live_server: str, browser_page: Any) -> None:
    page = browser_page
    console_errors: list[str] = []
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)

    page.goto(live_server + "/")
    page.fill("#prompt", "a red barn under a blue sky")
    page.fill("#steps", "4")
    page.fill("#seed", "7")
    page.click("#paint-button")

    # The card arrives without a page reload and follows the job's event stream.
    card = page.locator("#results .job").first
    card.wait_for(timeout=15_000)
    assert page.url.rstrip("/") == live_server

    image = card.locator("img.job-image").first
    image.wait_for(state="visible", timeout=120_000)
    # Polled from the test rather than with wait_for_function, which evaluates a string in the page
    # and so is refused by the page's Content-Security-Policy (no 'unsafe-eval').
    deadline = time.monotonic() + 15
    while not image.evaluate("img => img.complete") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert image.evaluate("img => img.naturalWidth") > 0
    assert card.locator(".badge-succeeded").count() == 1
    assert not [text for text in console_errors if "Content Security Policy" in text], console_errors
