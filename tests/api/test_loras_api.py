"""LoRAs through the API: the list, painting with one (weight 1 vs 0), the record, and what is refused."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.services.metadata import parse_a1111
from tests.tiny_lora import build_tiny_lora, write_header_only
from tests.tiny_pipeline import TINY

Paint = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def lora_models_dir(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny`` with a LoRA made for it (``ink``) and one tagged for SDXL (``xl/style``)."""
    root = tmp_path_factory.mktemp("api-lora-models")
    shutil.copytree(tiny_models_dir / TINY, root / TINY)
    build_tiny_lora(root / TINY, root / "loras" / "ink.safetensors")
    write_header_only(
        root / "loras" / "xl" / "style.safetensors",
        {"lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight": [4, 2048]},
        {"ss_base_model_version": "sdxl_base_v1-0"},
    )
    return root


@pytest.fixture
def lora_client(make_client: Callable[..., TestClient], lora_models_dir: Path) -> TestClient:
    return make_client(models_dir=lora_models_dir)


@pytest.fixture
def idle_lora_client(make_client: Callable[..., TestClient], lora_models_dir: Path) -> TestClient:
    return make_client(models_dir=lora_models_dir, start_workers=False)


def _image(client: TestClient, generation: dict[str, Any]) -> Image.Image:
    assert generation["status"] == "succeeded", generation
    [image] = generation["images"]
    response = client.get(f"/api/images/{image['id']}")
    assert response.status_code == 200
    return Image.open(io.BytesIO(response.content))


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_loras_are_listed_with_family_and_size(idle_lora_client: TestClient, lora_models_dir: Path) -> None:
    response = idle_lora_client.get("/api/loras")
    assert response.status_code == 200
    listed = {lora["name"]: lora for lora in response.json()}
    assert set(listed) == {"ink", "xl/style"}
    assert listed["ink"] == {
        "name": "ink",
        "family": None,
        "size": (lora_models_dir / "loras" / "ink.safetensors").stat().st_size,
    }
    assert listed["xl/style"]["family"] == "sdxl"


def test_a_lora_paints_at_weight_one_not_at_zero_and_is_recorded(lora_client: TestClient, paint_job: Paint) -> None:
    plain = paint_job(lora_client, seed=3)
    with_ink = paint_job(lora_client, seed=3, loras=[{"name": "ink", "weight": 1}])
    zero = paint_job(lora_client, seed=3, loras=[{"name": "ink", "weight": 0}])

    plain_pixels = _pixels(_image(lora_client, plain))
    assert np.abs(_pixels(_image(lora_client, with_ink)) - plain_pixels).mean() > 1.0
    assert np.array_equal(_pixels(_image(lora_client, zero)), plain_pixels)
    # The next job after a LoRA job paints as if there had never been one.
    assert np.array_equal(_pixels(_image(lora_client, paint_job(lora_client, seed=3))), plain_pixels)

    [recorded] = with_ink["loras"]
    assert (recorded["name"], recorded["weight"]) == ("ink", 1.0)
    assert len(recorded["hash"]) == 12
    assert plain["loras"] == []

    # The A1111 infotext names it in the prompt and under "Lora hashes", as other tools read it.
    infotext = _image(lora_client, with_ink).info["parameters"]
    parsed = parse_a1111(infotext)
    assert parsed["prompt"] == "a red barn <lora:ink:1>"
    assert parsed["Lora hashes"] == f"ink: {recorded['hash']}"
    assert parsed["seed"] == 3


def test_a_lora_weight_change_shows_on_the_lineage_edge(idle_lora_client: TestClient) -> None:
    base = {"prompt": "a red barn", "steps": 2, "width": 64, "height": 64, "seed": 1}
    parent = idle_lora_client.post("/api/generate/prompt", json=base | {"loras": [{"name": "ink", "weight": 0.5}]})
    assert parent.status_code == 202, parent.text
    child = idle_lora_client.post(
        "/api/generate/prompt",
        json=base | {"parent_id": parent.json()["id"], "loras": [{"name": "ink", "weight": 1.25}]},
    )
    assert child.status_code == 202, child.text
    lineage = idle_lora_client.get(f"/api/generations/{child.json()['id']}/lineage").json()
    [node] = lineage["root"]["children"]
    assert node["id"] == child.json()["id"]
    assert node["edge"]["changes"] == [
        {"name": "loras", "label": "LoRAs", "before": "<lora:ink:0.5>", "after": "<lora:ink:1.25>"}
    ]


@pytest.mark.parametrize(
    ("loras", "says"),
    [
        ([{"name": "nothing-here", "weight": 1}], "unknown LoRA 'nothing-here'"),
        ([{"name": "xl/style", "weight": 1}], "sdxl"),
        ([{"name": "ink", "weight": 2.5}], "less than or equal to 2"),
        ([{"name": "ink", "weight": -2.01}], "greater than or equal to -2"),
        ([{"name": "ink", "weight": "strong"}], "valid number"),
        ([{"name": "ink", "weight": 1}, {"name": "ink", "weight": 0.5}], "once"),
        ([{"name": "ink", "weight": 1, "hash": "abc"}], "name and weight only"),
        ([{"name": "", "weight": 1}], "at least 1 character"),
        ([{"name": "a;rm", "weight": 1}], "pattern"),
        ([{"weight": 1}], "Field required"),
        ([{"name": "ink", "weight": 1, "scale": 2}], "Extra inputs"),
        ([{"name": f"l{index}", "weight": 1} for index in range(9)], "at most 8"),
        (5, "valid list"),
        ("ink:heavy:x", "pattern"),
    ],
)
def test_bad_loras_are_refused_with_422(idle_lora_client: TestClient, loras: Any, says: str) -> None:
    response = idle_lora_client.post(
        "/api/generate/prompt", json={"prompt": "a red barn", "steps": 2, "width": 64, "height": 64, "loras": loras}
    )
    assert response.status_code == 422, response.text
    assert says in response.text


def test_loras_may_be_written_as_text_as_the_studio_form_sends_them(idle_lora_client: TestClient) -> None:
    response = idle_lora_client.post(
        "/api/generate/prompt", json={"prompt": "a red barn", "steps": 2, "loras": "<lora:ink:0.75>"}
    )
    assert response.status_code == 202, response.text
    [lora] = idle_lora_client.get(f"/api/generations/{response.json()['id']}").json()["loras"]
    assert (lora["name"], lora["weight"]) == ("ink", 0.75)


def test_a_nan_weight_is_refused(idle_lora_client: TestClient) -> None:
    response = idle_lora_client.post(
        "/api/generate/prompt",
        content=b'{"prompt": "a red barn", "loras": [{"name": "ink", "weight": NaN}]}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422


def test_loras_ride_along_on_inpaint_jobs_and_variations(idle_lora_client: TestClient) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(buffer, format="PNG")
    upload = idle_lora_client.post("/api/uploads", files={"file": ("p.png", buffer.getvalue(), "image/png")})
    assert upload.status_code == 201, upload.text
    inpaint = idle_lora_client.post(
        "/api/generate/inpaint",
        json={
            "prompt": "a yellow sun",
            "image_id": upload.json()["id"],
            "outpaint": {"right": 16},
            "loras": [{"name": "ink", "weight": 0.7}],
        },
    )
    assert inpaint.status_code == 202, inpaint.text
    [recorded] = idle_lora_client.get(f"/api/generations/{inpaint.json()['id']}").json()["loras"]
    assert (recorded["name"], recorded["weight"]) == ("ink", 0.7)

    varied = idle_lora_client.post(f"/api/generations/{inpaint.json()['id']}/vary", json={"seed": 5})
    assert varied.status_code == 202, varied.text
    [inherited] = idle_lora_client.get(f"/api/generations/{varied.json()['id']}").json()["loras"]
    assert inherited == recorded
