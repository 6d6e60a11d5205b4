"""Style API: POST /api/generate/style end to end on the tiny model, and the requests it refuses."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

Wait = Callable[..., dict[str, Any]]


def upload(client: TestClient, width: int = 64, height: int = 64, colour: tuple[int, int, int] = (30, 90, 200)) -> int:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    response = client.post("/api/uploads", files={"file": ("picture.png", buffer.getvalue(), "image/png")})
    assert response.status_code == 201, response.text
    image_id: int = response.json()["id"]
    return image_id


def style_request(*style_image_ids: int, **overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "prompt": "a lighthouse on a cliff",
        "style_image_ids": list(style_image_ids),
        "steps": 2,
        "width": 64,
        "height": 64,
        "scheduler": "ddim",
        "seed": 11,
    }
    request.update(overrides)
    return request


def fetched(client: TestClient, generation: dict[str, Any]) -> list[Image.Image]:
    """The generation's images as served by the API."""
    pictures = []
    for image in generation["images"]:
        response = client.get(image["url"])
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        pictures.append(Image.open(io.BytesIO(response.content)))
    return pictures


def test_a_style_job_is_accepted_then_paints_in_the_style_of_two_references(
    client: TestClient, wait_final: Wait
) -> None:
    warm, cold = upload(client, colour=(220, 120, 30)), upload(client, colour=(30, 90, 200))

    response = client.post("/api/generate/style", json=style_request(warm, cold, style_weights=[1.5, 0.5]))

    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "queued"
    done = wait_final(client, accepted["id"])
    assert done["status"] == "succeeded", done["error"]
    assert done["mode"] == "style"
    assert [picture.size for picture in fetched(client, done)] == [(64, 64)]


def test_a_style_job_over_a_content_image_paints_at_the_content_size(client: TestClient, wait_final: Wait) -> None:
    # Sides are painted at a multiple of 8: 84 becomes 80.
    reference, content = upload(client), upload(client, width=84, height=64, colour=(200, 200, 40))
    request = style_request(reference, image_id=content, strength=0.7, width=None, height=None)

    response = client.post("/api/generate/style", json=request)

    assert response.status_code == 202, response.text
    done = wait_final(client, response.json()["id"])
    assert done["status"] == "succeeded", done["error"]
    assert [picture.size for picture in fetched(client, done)] == [(80, 64)]


@pytest.mark.parametrize("field", ["style_image_ids", "image_id"])
def test_an_unknown_image_is_not_found(idle_client: TestClient, field: str) -> None:
    reference = upload(idle_client)
    request = style_request(reference)
    request[field] = [987654] if field == "style_image_ids" else 987654

    response = idle_client.post("/api/generate/style", json=request)

    assert response.status_code == 404
    assert response.json()["detail"] == "image 987654 not found"


def test_style_weights_of_another_length_than_the_references_are_refused(idle_client: TestClient) -> None:
    first, second = upload(idle_client), upload(idle_client)

    response = idle_client.post("/api/generate/style", json=style_request(first, second, style_weights=[1.0]))

    assert response.status_code == 422
    assert "style_weights has 1 values for 2 style images" in response.json()["detail"]


def test_a_style_job_without_references_is_refused_naming_the_field(idle_client: TestClient) -> None:
    response = idle_client.post("/api/generate/style", json=style_request())

    assert response.status_code == 422
    assert "style_image_ids" in response.json()["detail"]


def test_ip_adapter_on_a_model_without_one_is_refused(idle_client: TestClient) -> None:
    reference = upload(idle_client)

    response = idle_client.post("/api/generate/style", json=style_request(reference, style_method="ip-adapter"))

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "has no IP-Adapter" in detail and "style_method shared-attention" in detail
    assert idle_client.get("/api/generations").json()["items"] == []
