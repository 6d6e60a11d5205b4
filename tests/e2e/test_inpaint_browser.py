"""An artist paints a mask over an image in a real browser and gets the inpainted painting.

The model is the trained studio-tiny when the repository has it, else a tiny seeded pipeline
built here under the name studio-tiny, so the test always runs.
"""

from __future__ import annotations

import io
import json
import re
import time
import urllib.request
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

MODEL = "studio-tiny"
SIDE = 64


@pytest.fixture
def server(live_server: str) -> str:
    """The studio with its embedded worker, painting with MODEL (see tests/e2e/conftest.py)."""
    return live_server


def api(base: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """A call as a script makes it (no Origin header, so the local artist needs no CSRF token)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_final(base: str, generation_id: int, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        generation: dict[str, Any] = api(base, f"/api/generations/{generation_id}")
        if generation["status"] in ("succeeded", "failed", "cancelled"):
            return generation
        time.sleep(0.2)
    pytest.fail(f"generation {generation_id} did not finish within {timeout} s")


def fetch_image(base: str, image_id: int) -> Image.Image:
    with urllib.request.urlopen(f"{base}/api/images/{image_id}", timeout=30) as response:
        image = Image.open(io.BytesIO(response.read()))
        image.load()
        return image


def test_painting_a_mask_in_the_editor_repaints_the_image(server: str, browser_page: Any) -> None:
    # 1. a painting to inpaint, made through the API
    accepted = api(
        server,
        "/api/generate/prompt",
        {"prompt": "a red barn under a blue sky", "seed": 7, "steps": 4, "width": SIDE, "height": SIDE},
    )
    source = wait_final(server, accepted["id"])
    assert source["status"] == "succeeded", source
    image_id = source["images"][0]["id"]

    page = browser_page
    console_errors: list[str] = []
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)

    # 2. the editor, from the painting's own page
    page.goto(f"{server}/generations/{source['id']}")
    page.click(f'a[href="/images/{image_id}/inpaint"]')
    canvas = page.locator("canvas.mask-canvas")
    canvas.wait_for(state="visible", timeout=15_000)
    box = canvas.bounding_box()
    assert box and box["width"] > 0

    # 3. a stroke with the mouse across the middle of the image, at brush size 8
    page.locator("[data-role=brush-size]").fill("8")
    top = box["y"] + box["height"] * 0.5
    page.mouse.move(box["x"] + box["width"] * 0.2, top)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(box["x"] + box["width"] * (0.2 + 0.06 * step), top, steps=2)
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

    inpainted = wait_final(server, new_id)
    assert inpainted["status"] == "succeeded", inpainted
    assert inpainted["mode"] == "inpaint"
    assert inpainted["parent_id"] == source["id"]
    assert (inpainted["width"], inpainted["height"]) == (SIDE, SIDE)

    # The painted band changed; the rows far from the stroke were kept as they were.
    before = np.asarray(fetch_image(server, image_id).convert("RGB"), dtype=np.int16)
    after = np.asarray(fetch_image(server, inpainted["images"][0]["id"]).convert("RGB"), dtype=np.int16)
    band = slice(SIDE // 2 - 2, SIDE // 2 + 2), slice(SIDE // 4, SIDE * 3 // 4)
    assert np.abs(after[band] - before[band]).mean() > 1
    assert np.abs(after[:12] - before[:12]).max() <= 2
    assert not [text for text in console_errors if "Content Security Policy" in text], console_errors
