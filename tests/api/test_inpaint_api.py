"""Inpaint API: POST /api/generate/inpaint end to end on the tiny models, and the requests it refuses."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.tiny_pipeline import TINY, TINY_INPAINT

Wait = Callable[..., dict[str, Any]]


def source_picture(width: int = 64, height: int = 64) -> Image.Image:
    """A red and blue picture with a gradient, so that kept pixels are told from repainted ones."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[: height // 2] = (200, 40, 40)
    pixels[height // 2 :] = (40, 40, 200)
    pixels[..., 1] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    return Image.fromarray(pixels)


def square_mask(width: int = 64, height: int = 64) -> Image.Image:
    """White (repaint) in the middle square, black (keep) around it."""
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (width // 4, height // 4, 3 * width // 4, 3 * height // 4))
    return mask


def upload(client: TestClient, picture: Image.Image) -> int:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    response = client.post("/api/uploads", files={"file": ("picture.png", buffer.getvalue(), "image/png")})
    assert response.status_code == 201, response.text
    image_id: int = response.json()["id"]
    return image_id


def inpaint_request(image_id: int, mask_id: int | None, **overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "prompt": "a yellow sun",
        "image_id": image_id,
        "mask_id": mask_id,
        "mask_blur": 0,
        "steps": 2,
        "scheduler": "ddim",
        "seed": 5,
    }
    request.update(overrides)
    return request


def painted(client: TestClient, generation: dict[str, Any]) -> np.ndarray:
    """The generation's one image as served by the API, as RGB pixels."""
    [image] = generation["images"]
    response = client.get(image["url"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(response.content)) as picture:
        return np.asarray(picture.convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("model", [TINY, TINY_INPAINT], ids=["four-channel-unet", "inpainting-unet"])
def test_an_inpaint_job_repaints_the_mask_and_keeps_every_other_pixel(
    client: TestClient, wait_final: Wait, model: str
) -> None:
    source, mask = source_picture(), square_mask()
    image_id, mask_id = upload(client, source), upload(client, mask.convert("RGB"))

    response = client.post("/api/generate/inpaint", json=inpaint_request(image_id, mask_id, model=model))

    assert response.status_code == 202, response.text
    assert response.json()["notes"] == []
    done = wait_final(client, response.json()["id"])
    assert done["status"] == "succeeded", done["error"]
    assert done["mode"] == "inpaint"
    pixels, original = painted(client, done), np.asarray(source, dtype=np.int16)
    assert pixels.shape == original.shape
    keep = np.asarray(mask) == 0
    assert np.array_equal(pixels[keep], original[keep])
    assert np.abs(pixels[~keep] - original[~keep]).max() > 20, "the masked square was not repainted"


def test_outpainting_extends_the_canvas_and_keeps_the_source(client: TestClient, wait_final: Wait) -> None:
    source = source_picture()
    request = inpaint_request(upload(client, source), None, outpaint={"right": 16, "bottom": 8})

    response = client.post("/api/generate/inpaint", json=request)

    assert response.status_code == 202, response.text
    done = wait_final(client, response.json()["id"])
    assert done["status"] == "succeeded", done["error"]
    pixels = painted(client, done)
    assert pixels.shape == (72, 80, 3)
    assert np.array_equal(pixels[:64, :64], np.asarray(source, dtype=np.int16))


def test_a_mask_of_another_size_is_resized_with_a_note(client: TestClient, wait_final: Wait) -> None:
    image_id, mask_id = upload(client, source_picture()), upload(client, square_mask(32, 32).convert("RGB"))

    response = client.post("/api/generate/inpaint", json=inpaint_request(image_id, mask_id))

    assert response.status_code == 202, response.text
    assert response.json()["notes"] == ["the mask is 32x32 and was resized to the image's 64x64"]
    done = wait_final(client, response.json()["id"])
    assert done["status"] == "succeeded", done["error"]
    assert painted(client, done).shape == (64, 64, 3)


@pytest.mark.parametrize("field", ["image_id", "mask_id"])
def test_an_unknown_image_or_mask_is_not_found(idle_client: TestClient, field: str) -> None:
    request = inpaint_request(upload(idle_client, source_picture()), upload(idle_client, square_mask().convert("RGB")))
    request[field] = 987654

    response = idle_client.post("/api/generate/inpaint", json=request)

    assert response.status_code == 404
    assert response.json()["detail"] == "image 987654 not found"


def test_an_inpaint_job_without_a_mask_or_outpaint_is_refused_naming_the_fields(idle_client: TestClient) -> None:
    response = idle_client.post(
        "/api/generate/inpaint", json=inpaint_request(upload(idle_client, source_picture()), None)
    )

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "mask_id" in detail and "outpaint" in detail
    assert idle_client.get("/api/generations").json()["items"] == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("mask_blur", 100), ("strength", 0), ("outpaint", {"right": 12})],
    ids=["blur-too-wide", "strength-zero", "outpaint-not-a-multiple-of-8"],
)
def test_out_of_range_inpaint_fields_are_refused_by_name(idle_client: TestClient, field: str, value: Any) -> None:
    request = inpaint_request(upload(idle_client, source_picture()), upload(idle_client, square_mask().convert("RGB")))
    request[field] = value

    response = idle_client.post("/api/generate/inpaint", json=request)

    assert response.status_code == 422
    assert field in response.json()["detail"]
