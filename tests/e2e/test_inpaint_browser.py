"""An artist paints a mask over an image in a real browser and gets the inpainted painting.

The model is the trained studio-tiny when the repository has it, else a tiny seeded pipeline
built here under the name studio-tiny, so the test always runs.
"""

from __future__ import annotations

import io
import re
import time

import numpy as np
import pytest
from PIL import Image

from tests.e2e.conftest import Artist, check_page

pytestmark = pytest.mark.slow

MODEL = "studio-tiny"
SIDE = 64


def fetch_image(artist: Artist, image_id: int) -> Image.Image:
    image = Image.open(io.BytesIO(artist.page.request.get(f"{artist.url}/api/images/{image_id}").body()))
    image.load()
    return image


def test_painting_a_mask_in_the_editor_repaints_the_image(artist: Artist) -> None:
    server = artist.url
    # 1. a painting to inpaint, made through the API
    source = artist.paint("a red barn under a blue sky", seed=7, steps=4, width=SIDE, height=SIDE)
    assert source["status"] == "succeeded", source
    image_id = source["images"][0]["id"]

    page = artist.page

    # 2. the editor, from the painting's own page
    page.goto(f"{server}/generations/{source['id']}")
    page.click(f'a[href="/images/{image_id}/inpaint"]')
    check_page(page)
    canvas = page.locator("canvas.mask-canvas")
    canvas.wait_for(state="visible", timeout=15_000)
    box = canvas.bounding_box()
    assert box and box["width"] > 0

    # 3. a stroke across the middle of the image at brush size 8: with the mouse on a laptop, a
    # finger on a phone
    page.locator("[data-role=brush-size]").fill("8")
    top = box["y"] + box["height"] * 0.5
    xs = [box["x"] + box["width"] * (0.2 + 0.06 * step) for step in range(11)]
    if artist.phone:
        touch = page.context.new_cdp_session(page)
        for index, x in enumerate(xs):
            kind = "touchStart" if index == 0 else "touchMove"
            touch.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": top}]})
        touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    else:
        page.mouse.move(xs[0], top)
        page.mouse.down()
        for x in xs[1:]:
            page.mouse.move(x, top, steps=2)
        page.mouse.up()
    status = page.locator("[data-role=mask-status]")
    assert status.inner_text().startswith("Repainting"), status.inner_text()

    # 4. repaint it
    page.fill("#inpaint-prompt", "a green field under a blue sky")
    page.fill("#inpaint-steps", "4")
    page.fill("#inpaint-seed", "11")
    page.click("[data-role=submit]")
    page.wait_for_url(re.compile(r".*/generations/\d+$"), timeout=30_000)
    new_id = int(page.url.rsplit("/", 1)[1])
    assert new_id != source["id"]

    # 5. the new painting's page shows its progress, then the inpainted image
    image = page.locator("img.job-image, .gallery-item img").first
    image.wait_for(state="visible", timeout=180_000)
    deadline = time.monotonic() + 15
    while not image.evaluate("img => img.complete") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert image.evaluate("img => img.naturalWidth") > 0

    inpainted = artist.wait(new_id)
    assert inpainted["status"] == "succeeded", inpainted
    assert inpainted["mode"] == "inpaint"
    assert inpainted["parent_id"] == source["id"]
    assert (inpainted["width"], inpainted["height"]) == (SIDE, SIDE)

    # The painted band changed; the rows far from the stroke were kept as they were.
    before = np.asarray(fetch_image(artist, image_id).convert("RGB"), dtype=np.int16)
    after = np.asarray(fetch_image(artist, inpainted["images"][0]["id"]).convert("RGB"), dtype=np.int16)
    band = slice(SIDE // 2 - 2, SIDE // 2 + 2), slice(SIDE // 4, SIDE * 3 // 4)
    assert np.abs(after[band] - before[band]).mean() > 1
    assert np.abs(after[:12] - before[:12]).max() <= 2
