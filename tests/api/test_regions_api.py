"""Regional prompts through the API: boxes and masks recorded on the row, painted, written into the PNG and
read back, shown on lineage edges, and bad regions refused with 422 (or 404 for a mask one may not use)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from app.services.metadata import PARAMETERS_KEY, STUDIO_KEY, _png_text

Paint = Callable[..., dict[str, Any]]
LEFT = {"prompt": "a red boat", "box": [0, 0, 0.5, 1], "weight": 1.5}


def left_half_mask() -> Image.Image:
    mask = Image.new("RGB", (64, 64), (0, 0, 0))
    mask.paste((255, 255, 255), (0, 0, 32, 64))
    return mask


def upload(client: TestClient, picture: Image.Image) -> int:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    response = client.post("/api/uploads", files={"file": ("mask.png", buffer.getvalue(), "image/png")})
    assert response.status_code == 201, response.text
    image_id: int = response.json()["id"]
    return image_id


def png_of(client: TestClient, generation: dict[str, Any]) -> bytes:
    response = client.get(generation["images"][0]["url"])
    assert response.status_code == 200
    return response.content


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def test_regions_are_painted_and_recorded(client: TestClient, paint_job: Paint) -> None:
    generation = paint_job(client, regions=[LEFT, {"prompt": "a yellow sun", "box": [0.5, 0, 1, 1]}])
    assert generation["status"] == "succeeded", generation
    assert generation["regions"] == [
        {"prompt": "a red boat", "box": [0.0, 0.0, 0.5, 1.0], "weight": 1.5},
        {"prompt": "a yellow sun", "box": [0.5, 0.0, 1.0, 1.0], "weight": 1.0},
    ]


def test_a_mask_region_is_painted_as_the_box_it_fills_and_recorded_with_its_mask(
    client: TestClient, paint_job: Paint
) -> None:
    mask_id = upload(client, left_half_mask())
    masked = paint_job(client, seed=4, regions=[{"prompt": "a red boat", "mask_id": mask_id}])
    assert masked["status"] == "succeeded", masked
    assert masked["regions"] == [{"prompt": "a red boat", "mask_id": mask_id, "weight": 1.0}]
    boxed = paint_job(client, seed=4, regions=[{"prompt": "a red boat", "box": [0, 0, 0.5, 1]}])
    plain = paint_job(client, seed=4)
    assert np.array_equal(pixels(png_of(client, masked)), pixels(png_of(client, boxed)))
    assert np.abs(pixels(png_of(client, masked)) - pixels(png_of(client, plain))).mean() > 0.5


def test_regions_are_written_into_the_png_and_read_back(client: TestClient, paint_job: Paint) -> None:
    mask_id = upload(client, left_half_mask())
    regions = [LEFT, {"prompt": "a yellow sun, bright", "mask_id": mask_id, "weight": 0.5}]
    generation = paint_job(client, regions=regions)
    recorded = generation["regions"]
    png = png_of(client, generation)
    chunks = _png_text(png)
    assert json.loads(chunks[STUDIO_KEY])["regions"] == recorded
    infotext_line = chunks[PARAMETERS_KEY].splitlines()[-1]
    assert "Regions: " in infotext_line
    read = client.post("/api/parameters/read", files={"file": ("painting.png", png, "image/png")})
    assert read.status_code == 200, read.text
    assert read.json()["source"] == "studio" and read.json()["regions"] == recorded

    # An AUTOMATIC1111 reader sees only the infotext: the regions come back from its "Regions" entry.
    info = PngInfo()
    info.add_text(PARAMETERS_KEY, chunks[PARAMETERS_KEY])
    buffer = io.BytesIO()
    Image.open(io.BytesIO(png)).save(buffer, format="PNG", pnginfo=info)
    read = client.post("/api/parameters/read", files={"file": ("a1111.png", buffer.getvalue(), "image/png")})
    assert read.status_code == 200, read.text
    assert read.json()["source"] == "a1111"
    assert read.json()["regions"] == recorded
    assert "Regions" not in read.json()["extra"]


def prompt_job(client: TestClient, **fields: Any) -> int:
    response = client.post("/api/generate/prompt", json={"prompt": "a harbour", "steps": 2, "seed": 1, **fields})
    assert response.status_code == 202, response.text
    generation_id: int = response.json()["id"]
    return generation_id


def test_a_lineage_edge_names_regions_added_removed_and_changed(idle_client: TestClient) -> None:
    sun = {"prompt": "a yellow sun", "box": [0.5, 0, 1, 1]}
    root = prompt_job(idle_client, regions=[LEFT])
    moved = prompt_job(idle_client, parent_id=root, regions=[{**LEFT, "box": [0, 0, 0.4, 1], "weight": 2}, sun])
    cleared = prompt_job(idle_client, parent_id=moved, regions=[sun])
    nodes: dict[int, dict[str, Any]] = {}
    stack = [idle_client.get(f"/api/generations/{cleared}/lineage").json()["root"]]
    while stack:
        node = stack.pop()
        nodes[node["id"]] = node
        stack.extend(node["children"])
    assert nodes[moved]["edge"]["summary"] == (
        'refine: region added: "a yellow sun" in box 0.5,0,1,1; '
        'region "a red boat": box 0,0,0.5,1 ×1.5 → box 0,0,0.4,1 ×2'
    )
    assert nodes[cleared]["edge"]["summary"] == 'refine: region removed: "a red boat" in box 0,0,0.4,1 ×2'
    [change] = nodes[cleared]["edge"]["changes"]
    assert change["name"] == "regions"
    assert change["before"] == '"a red boat" in box 0,0,0.4,1 ×2; "a yellow sun" in box 0.5,0,1,1'
    assert change["after"] == '"a yellow sun" in box 0.5,0,1,1'


def test_an_unknown_region_mask_is_not_found(idle_client: TestClient) -> None:
    response = idle_client.post(
        "/api/generate/prompt", json={"prompt": "a harbour", "regions": [{"prompt": "a boat", "mask_id": 999_999}]}
    )
    assert response.status_code == 404, response.text
    assert "image 999999 not found" in response.text


def signed_in(make_client: Callable[..., TestClient], username: str) -> TestClient:
    """A client of a studio that requires accounts, signed in as a new artist, sending its CSRF token."""
    client = make_client(auth="required", start_workers=False)
    response = client.post("/api/auth/register", json={"username": username, "password": "a long enough password"})
    assert response.status_code == 201, response.text
    client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    return client


def test_someone_else_s_mask_is_not_found(make_client: Callable[..., TestClient]) -> None:
    alice, bob = signed_in(make_client, "alice"), signed_in(make_client, "bob")
    theirs = upload(alice, left_half_mask())
    region = {"prompt": "a boat", "mask_id": theirs}
    response = bob.post("/api/generate/prompt", json={"prompt": "a harbour", "regions": [region]})
    assert response.status_code == 404, response.text
    assert f"image {theirs} not found" in response.text
    assert alice.post("/api/generate/prompt", json={"prompt": "a harbour", "regions": [region]}).status_code == 202


@pytest.mark.parametrize(
    ("regions", "says"),
    [
        ([{"prompt": "a red boat", "box": [0.5, 0, 0.5, 1]}], "0 <= x0 < x1 <= 1"),
        ([{"prompt": "a red boat", "box": [0, 0.6, 1, 0.2]}], "0 <= y0 < y1 <= 1"),
        ([{"prompt": "a red boat", "box": [-0.1, 0, 1, 1]}], "0 <= x0"),
        ([{"prompt": "a red boat", "box": [0, 0, 1.5, 1]}], "x1 <= 1"),
        ([{"prompt": "a red boat", "box": [0, 0, 1]}], "box"),
        ([{"prompt": "a red boat", "box": [0, 0, 1, "x"]}], "valid number"),
        ([{"prompt": "", "box": [0, 0, 1, 1]}], "at least 1 character"),
        ([{"box": [0, 0, 1, 1]}], "Field required"),
        ([{"prompt": "a red boat", "box": [0, 0, 1, 1], "weight": 0}], "greater than 0"),
        ([{"prompt": "a red boat", "box": [0, 0, 1, 1], "weight": 5}], "less than or equal to 4"),
        ([{"prompt": "a red boat", "box": [0, 0, 1, 1], "mask_id": 3}], "exactly one of box and mask_id (got both)"),
        ([{"prompt": "a red boat"}], "exactly one of box and mask_id (got neither)"),
        ([{"prompt": "a red boat", "box": None, "mask_id": None}], "exactly one of box and mask_id"),
        ([{"prompt": "a red boat", "mask_id": 0}], "greater than or equal to 1"),
        ([{"prompt": "a red boat", "mask_id": -3}], "greater than or equal to 1"),
        ([{"prompt": "a red boat", "mask_id": 2**31}], "less than or equal to 2147483647"),
        ([{"prompt": "a red boat", "mask_id": "mask"}], "valid integer"),
        ([{"prompt": "a red boat", "mask_id": 1.5}], "valid integer"),
        ([{"prompt": "a red boat", "mask_id": [1]}], "valid integer"),
        ([{"prompt": "a red boat", "mask_id": 1, "weight": -1}], "greater than 0"),
        ([{"prompt": "a red boat", "mask_id": 1, "colour": "red"}], "Extra inputs"),
        ([{"prompt": "", "mask_id": 1}], "at least 1 character"),
        ([{"prompt": "x" * 2001, "mask_id": 1}], "at most 2000 characters"),
        ([LEFT] * 5, "at most 4"),
        ("left", "regions must be a JSON list"),
        ('[{"prompt": "a red boat", "box": [0, 0, 1]}]', "box"),
        (["left"], "valid dictionary"),
    ],
)
def test_bad_regions_are_refused_with_422(idle_client: TestClient, regions: Any, says: str) -> None:
    response = idle_client.post("/api/generate/prompt", json={"prompt": "a harbour", "steps": 2, "regions": regions})
    assert response.status_code == 422, response.text
    assert says in response.text


def test_a_nan_box_is_refused(idle_client: TestClient) -> None:
    response = idle_client.post(
        "/api/generate/prompt",
        content=b'{"prompt": "a harbour", "regions": [{"prompt": "a boat", "box": [0, 0, NaN, 1]}]}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422


def test_regions_are_refused_on_inpaint_jobs(idle_client: TestClient) -> None:
    response = idle_client.post(
        "/api/generate/inpaint",
        json={"prompt": "a harbour", "image_id": 1, "outpaint": {"right": 16}, "regions": [LEFT]},
    )
    assert response.status_code == 422
    assert "prompt jobs only" in response.text
