"""An artist paints from the studio page in a real browser: the card in view, the draft kept, errors by their field."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.conftest import Artist, check_page, wait_until

pytestmark = pytest.mark.slow


def in_view(page: Any, selector: str) -> bool:
    box = page.locator(selector).first.bounding_box()
    height: int = page.viewport_size["height"]
    return bool(box) and box["y"] + box["height"] > 0 and box["y"] < height


def test_painting_with_ctrl_enter_shows_the_new_card_in_view_with_its_step(artist: Artist) -> None:
    page = artist.page
    artist.goto("/")
    page.fill("#prompt", "a red barn under a blue sky")
    page.fill("#steps", "2")
    page.fill("#seed", "7")
    # Scrolled down to the bottom of the form, as after filling every field.
    page.locator("#seed").scroll_into_view_if_needed()
    page.press("#seed", "Control+Enter")

    card = page.locator("#results .job").first
    card.wait_for(timeout=15_000)
    assert page.url.rstrip("/") == artist.url
    assert in_view(page, "#results .job"), "the new card is scrolled into view"
    image = card.locator("img.job-image").first
    image.wait_for(state="visible", timeout=60_000)
    wait_until(lambda: image.evaluate("img => img.complete && img.naturalWidth > 0"), what="the painting")
    assert card.locator(".badge-succeeded").count() == 1
    # The painting is drawn large and crisp: 64 px upscaled, pixel for pixel.
    assert image.evaluate("img => getComputedStyle(img).imageRendering") == "pixelated"
    assert image.bounding_box()["width"] >= (256 if not artist.phone else 300)
    check_page(page)


def test_a_queued_card_says_how_many_are_ahead_and_a_running_one_its_step(artist: Artist) -> None:
    page = artist.page
    # Three long jobs keep the one worker busy while the studio page is read. Their step counts
    # differ so that none can join another's call (dynamic batching), and the last one waits.
    first = artist.paint("a long painting", wait=False, steps=40)
    artist.paint("a second long painting", wait=False, steps=41)
    last = artist.paint("a third long painting", wait=False, steps=42)
    artist.goto("/")
    queued = page.locator(f"#job-{last['id']} [data-role=step]")
    assert re.search(r"\d+ ahead", queued.inner_text()), queued.inner_text()
    step = page.locator(f"#job-{first['id']} [data-role=placeholder-text]")
    wait_until(lambda: "step" in step.inner_text(), timeout=30, what="the running card's step")
    assert re.search(r"step \d+ of 40", step.inner_text())
    for job in (first, last):
        artist.api("POST", f"/api/generations/{job['id']}/cancel")


def test_the_prompt_draft_survives_a_reload_and_a_trip_to_history(artist: Artist) -> None:
    page = artist.page
    artist.goto("/")
    page.fill("#prompt", "a fox in the snow, woodcut")
    page.fill("#negative_prompt", "blurry")
    page.reload()
    assert page.input_value("#prompt") == "a fox in the snow, woodcut"
    artist.goto("/history")
    artist.goto("/")
    assert page.input_value("#prompt") == "a fox in the snow, woodcut"
    assert page.input_value("#negative_prompt") == "blurry"


def test_a_refused_field_gets_the_message_beside_it_and_the_focus(artist: Artist) -> None:
    page = artist.page
    artist.goto("/")
    page.fill("#prompt", "a lighthouse")
    # A browser that does not check the form's limits itself (the server does).
    page.locator("#studio-form").evaluate("form => { form.noValidate = true; }")
    page.fill("#steps", "500")
    page.click("#paint-button")
    alert = page.locator("#studio-form .field #error-steps[role=alert]")
    alert.wait_for(timeout=15_000)
    assert "Steps" in alert.inner_text() or "steps" in alert.inner_text()
    assert page.evaluate("() => document.activeElement.id") == "steps"
    assert page.get_attribute("#steps", "aria-invalid") == "true"
    assert page.input_value("#prompt") == "a lighthouse", "what was typed stays"
    assert in_view(page, "#steps")
    assert page.locator("#results .job").count() == 0
    check_page(page)
