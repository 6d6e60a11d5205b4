"""An artist reads where each word of a prompt landed on the painting's page, in a real browser:
choosing a word lays its heat map over the painting, the keyboard does the same, and the words
that barely landed are marked with a one-click refine that paints a new step."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import Artist, check_page

pytestmark = pytest.mark.slow

PROMPT = "a red qzxv boat on the left"


def test_choosing_a_word_overlays_its_map_and_a_weak_word_can_be_weighted_up(artist: Artist) -> None:
    painting = artist.paint(PROMPT, seed=2, steps=20, width=64, height=64)
    assert painting["status"] == "succeeded", painting
    image_id = painting["images"][0]["id"]
    words = artist.api("GET", f"/api/images/{image_id}/attention")["words"]
    boat = next(word for word in words if word["word"] == "boat")

    page = artist.page
    artist.goto(f"/generations/{painting['id']}")
    strip = page.get_by_role("group", name="Words of the prompt")
    strip.wait_for(state="visible", timeout=15_000)
    overlay = page.locator("[data-attention-overlay]")
    assert overlay.is_hidden()

    # 1. a click on "boat" lays its map over the painting and says where it is strongest
    boat_button = strip.get_by_role("button", name="boat", exact=True)
    boat_button.click()
    assert boat_button.get_attribute("aria-pressed") == "true"
    overlay.wait_for(state="visible")
    assert overlay.get_attribute("src") == boat["map_url"]
    page.wait_for_function("() => document.querySelector('[data-attention-overlay]').naturalWidth > 0")
    status = page.locator("[data-attention-status]")
    assert status.inner_text().startswith("“boat” is strong over")
    check_page(page)

    # 2. the keyboard chooses another word; choosing it again takes the map away
    red = strip.get_by_role("button", name="red", exact=True)
    red.focus()
    page.keyboard.press("Enter")
    assert red.get_attribute("aria-pressed") == "true" and boat_button.get_attribute("aria-pressed") == "false"
    assert overlay.get_attribute("src", timeout=5_000) == f"/api/images/{image_id}/attention/1.png"
    page.keyboard.press("Space")
    overlay.wait_for(state="hidden")
    assert status.inner_text() == "No word shown."

    # 3. the nonsense word barely landed: marked, and one click weights it up as a refine
    assert strip.locator(".word-weak").filter(has_text="qzxv").count() == 1
    hint = page.get_by_role("note")
    assert "These words barely landed:" in hint.inner_text()
    hint.get_by_role("button", name=re.compile(r"^Weight them up")).click()
    page.wait_for_url(re.compile(r".*/generations/\d+$"), timeout=30_000)
    assert int(page.url.rsplit("/", 1)[1]) != painting["id"]
    assert "(qzxv:1.3)" in page.locator("h1.prompt-title").inner_text()
    assert page.get_by_text(f"Refines #{painting['id']}").count() >= 1
    check_page(page)
