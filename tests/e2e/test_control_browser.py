"""An artist guides a painting with a ControlNet in a real browser: uploads a guide image in the studio form's
ControlNet fieldset, chooses canny, sees the guide and its map before painting, paints, and the generation
records the guide."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image, ImageDraw

from tests.e2e.conftest import Artist, check_page, e2e_models_dir, e2e_settings, wait_until
from tests.live_server import running_studio
from tests.tiny_controlnet import build_tiny_controlnet

pytestmark = pytest.mark.slow

CONTROLNET = "tiny-canny"


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The studio over a models folder holding studio-tiny and a ControlNet made from its UNet."""
    models = tmp_path_factory.mktemp("control-models")
    studio_tiny = e2e_models_dir() / "studio-tiny"
    (models / "studio-tiny").symlink_to(studio_tiny.resolve())
    build_tiny_controlnet(studio_tiny, models / "controlnet" / CONTROLNET, seed=1)
    settings = e2e_settings(tmp_path_factory.mktemp("control-studio")).model_copy(update={"models_dir": models})
    with running_studio(settings) as url:
        yield url


def guide_png() -> bytes:
    """A square and a diagonal in black on white: plain edges for canny to find."""
    image = Image.new("RGB", (96, 96), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((16, 16, 80, 80), outline="black", width=4)
    draw.line((0, 95, 95, 0), fill="black", width=3)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def control_field(page: Any) -> list[dict[str, Any]]:
    value: str = page.locator("#control").input_value()
    return list(json.loads(value)) if value else []


def loaded(image: Any) -> bool:
    """Whether an <img> has a picture decoded (a broken or empty one has no natural width)."""
    return bool(image.evaluate("img => img.complete && img.naturalWidth > 0"))


def test_a_canny_guide_is_shown_before_painting_and_recorded(artist: Artist) -> None:
    page = artist.page
    artist.goto("/")
    picker = page.locator("[data-control-picker]")
    # It shows once GET /api/controlnets?model=studio-tiny lists the ControlNet made for it.
    picker.wait_for(state="visible", timeout=15_000)
    assert page.locator("#control-model option").all_inner_texts() == [CONTROLNET]
    page.fill("#prompt", "a red barn under a blue sky")
    page.fill("#steps", "2")
    page.fill("#seed", "3")

    # 1. pick a guide image: uploaded from the file field, it becomes the chosen guide
    picker.scroll_into_view_if_needed()
    page.set_input_files(
        "#control-upload", files=[{"name": "edges.png", "mimeType": "image/png", "buffer": guide_png()}]
    )
    wait_until(lambda: control_field(page) != [], what="the uploaded guide in the control field")
    [guide] = control_field(page)
    image_id = guide["image_id"]
    assert isinstance(image_id, int) and image_id > 0

    # 2. choose scribble, then canny: each choice shows the guide beside its map before painting
    previews = page.locator("[data-control-picker] [data-role=previews]")
    source_view = page.locator("[data-control-picker] [data-role=source-view]")
    map_view = page.locator("[data-control-picker] [data-role=map-view]")
    status = page.locator("[data-control-picker] [data-role=status]")
    page.select_option("#control-kind", "scribble")
    wait_until(lambda: "follows this map" in status.inner_text() and loaded(map_view), what="the scribble map")
    scribble_map = map_view.get_attribute("src")
    page.select_option("#control-kind", "canny")
    wait_until(
        lambda: map_view.get_attribute("src") != scribble_map and loaded(map_view) and "follows" in status.inner_text(),
        what="the canny map",
    )
    assert previews.is_visible()
    wait_until(lambda: loaded(source_view), what="the guide image's thumbnail")
    assert str(source_view.get_attribute("src")).endswith(f"/api/images/{image_id}/thumb")
    # The map shown is the one the API computes: white edges on black, a grey-free canny map.
    pixels = map_view.evaluate(
        """img => {
            const canvas = document.createElement('canvas');
            canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
            const context = canvas.getContext('2d');
            context.drawImage(img, 0, 0);
            const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
            let white = 0, black = 0;
            for (let i = 0; i < data.length; i += 4) {
                if (data[i] > 250) white++; else if (data[i] < 5) black++;
            }
            return {white, black, total: data.length / 4};
        }"""
    )
    assert pixels["white"] > 0 and pixels["white"] + pixels["black"] == pixels["total"], pixels
    assert control_field(page) == [
        {"image_id": image_id, "kind": "canny", "model": CONTROLNET, "weight": 1, "start": 0, "end": 1}
    ]
    check_page(page)  # the fieldset with both pictures fits the width and passes axe-core

    # 3. paint: the new card's generation records the guide
    page.click("#paint-button")
    card = page.locator("#results .job").first
    card.wait_for(timeout=15_000)
    generation_id = int(str(card.get_attribute("id")).removeprefix("job-"))
    generation = artist.wait(generation_id)
    assert generation["control"] == [
        {"image_id": image_id, "kind": "canny", "model": CONTROLNET, "weight": 1.0, "start": 0.0, "end": 1.0}
    ]
    assert generation["images"], generation
