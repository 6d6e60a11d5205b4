"""Attention maps through the API on every family: each family's painting answers its prompt's words,
each with a heat map, and a FLUX.2 [klein] inpainting maps the canvas's own tokens."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.families.builders import FAMILY_OF, FLUX2_KLEIN
from tests.families.test_families_api import centre_mask, submit, two_colour_picture, upload


@pytest.mark.parametrize("model", list(FAMILY_OF))
def test_every_family_s_painting_answers_its_words_with_maps(family_client: TestClient, model: str) -> None:
    painted = submit(family_client, "/api/generate/prompt", model=model, prompt="a red barn, by the sea", seed=3)
    image = painted["images"][0]

    response = family_client.get(f"/api/images/{image['id']}/attention")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["available"] is True, body
    assert [word["word"] for word in body["words"]] == ["a", "red", "barn", "by", "the", "sea"]
    for word in body["words"]:
        assert 0.0 <= word["coverage"] <= 1.0
        assert all(0.0 < fraction < 1.0 for fraction in word["peak"])
    heat = family_client.get(body["words"][2]["map_url"])
    assert heat.status_code == 200 and heat.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(heat.content)).size == (image["width"], image["height"])


def test_a_flux2_klein_inpainting_maps_the_canvas_not_its_condition_tokens(family_client: TestClient) -> None:
    source = upload(family_client, two_colour_picture())
    mask = upload(family_client, centre_mask().convert("RGB"))
    painted = submit(
        family_client, "/api/generate/inpaint", model=FLUX2_KLEIN, prompt="a red barn", image_id=source, mask_id=mask
    )

    body = family_client.get(f"/api/images/{painted['images'][0]['id']}/attention").json()

    assert body["available"] is True, body
    assert [word["word"] for word in body["words"]] == ["a", "red", "barn"]
