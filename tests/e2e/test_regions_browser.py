"""An artist draws a region on the studio form in a real browser, writes its prompt, paints, and the
generation records the region; a second region added and removed from the keyboard leaves no trace, and the
painting's PNG brings the region back into the editor."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import Artist, check_page, wait_until

pytestmark = pytest.mark.slow


def drag(artist: Artist, start: tuple[float, float], end: tuple[float, float]) -> None:
    """A drag across the region frame, from and to fractions of it: a mouse on a laptop, a finger on a phone."""
    page = artist.page
    frame = page.locator("[data-region-editor] [data-role=stage]")
    # In the middle of the window, clear of the sticky header.
    frame.evaluate("element => element.scrollIntoView({block: 'center'})")
    box = frame.bounding_box()
    assert box and box["width"] > 50 and box["height"] > 50, box
    points = [
        (
            box["x"] + box["width"] * (start[0] + (end[0] - start[0]) * t),
            box["y"] + box["height"] * (start[1] + (end[1] - start[1]) * t),
        )
        for t in (0, 0.25, 0.5, 0.75, 1)
    ]
    if artist.phone:
        touch = page.context.new_cdp_session(page)
        for index, (x, y) in enumerate(points):
            kind = "touchStart" if index == 0 else "touchMove"
            touch.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": y}]})
        touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    else:
        page.mouse.move(*points[0])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(x, y, steps=2)
        page.mouse.up()


def regions_field(page: Any) -> list[dict[str, Any]]:
    value: str = page.locator("#regions").input_value()
    return list(json.loads(value)) if value else []


def test_a_drawn_region_with_its_prompt_is_painted_and_recorded(artist: Artist) -> None:
    page = artist.page
    artist.goto("/")
    editor = page.locator("[data-region-editor]")
    # It shows once the model list says studio-tiny takes regional prompts.
    editor.wait_for(state="visible", timeout=15_000)
    page.fill("#prompt", "a red boat and a yellow sun")
    page.fill("#steps", "2")
    page.fill("#seed", "3")

    # 1. a box over the left half, drawn with the pointer; its prompt field takes the focus
    drag(artist, (0.04, 0.05), (0.5, 0.95))
    prompt = page.locator("#region-prompt-0")
    wait_until(lambda: prompt.evaluate("input => document.activeElement === input"), what="the new region's prompt")
    page.keyboard.type("a red boat")
    page.fill("#region-weight-0", "1.5")
    assert page.locator("[data-region-editor] .region-box").count() == 1
    [drawn] = regions_field(page)
    assert drawn["prompt"] == "a red boat" and drawn["weight"] == 1.5
    x0, y0, x1, y1 = drawn["box"]
    assert x0 < 0.1 and y0 < 0.1 and 0.4 < x1 < 0.6 and y1 > 0.9, drawn["box"]

    # 2. a second region from the keyboard: added, placed on the right half, then removed
    page.locator("[data-action=add-region]").focus()
    page.keyboard.press("Enter")
    assert page.locator("#region-prompt-1").evaluate("input => document.activeElement === input")
    page.keyboard.type("a yellow sun")
    page.select_option("#region-place-1", "right")
    assert regions_field(page)[1] == {"prompt": "a yellow sun", "box": [0.5, 0, 1, 1], "weight": 1}
    check_page(page)  # the editor with two regions fits the width and passes axe-core
    remove = page.get_by_role("button", name="Remove region 2")
    remove.focus()
    page.keyboard.press("Enter")
    assert [region["prompt"] for region in regions_field(page)] == ["a red boat"]
    assert page.locator("[data-region-editor] .region-box").count() == 1

    # 3. paint: the new card's generation records the drawn region
    page.click("#paint-button")
    card = page.locator("#results .job").first
    card.wait_for(timeout=15_000)
    generation_id = int(str(card.get_attribute("id")).removeprefix("job-"))
    generation = artist.wait(generation_id)
    assert generation["regions"] == [{"prompt": "a red boat", "box": drawn["box"], "weight": 1.5}]

    # 4. the painting's PNG, picked on a fresh studio page, brings its region back into the editor
    png = page.request.get(artist.url + generation["images"][0]["url"]).body()
    artist.goto("/")
    editor.wait_for(state="visible", timeout=15_000)
    page.set_input_files("#png-file", files=[{"name": "boat.png", "mimeType": "image/png", "buffer": png}])
    wait_until(lambda: page.locator("#region-prompt-0").count() == 1, what="the PNG's region in the editor")
    assert page.locator("#region-prompt-0").input_value() == "a red boat"
    assert regions_field(page) == generation["regions"]
