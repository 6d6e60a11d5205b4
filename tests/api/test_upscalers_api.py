"""Upscaler networks through the API: listed, run before the repaint of an upscale, recorded; bad names refused."""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from app.services.metadata import PARAMETERS_KEY, read_png_parameters
from tests.upscaler_builders import esrgan_state, save_upscaler, srvgg_state

Paint = Callable[..., dict[str, Any]]
Wait = Callable[..., dict[str, Any]]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("spandrel") is None, reason="make install installs spandrel (--no-deps)"
)


@pytest.fixture(scope="module")
def upscaler_models_dir(tmp_path_factory: pytest.TempPathFactory, tiny_models_dir: Path) -> Path:
    """The tiny models beside an ``upscalers/`` folder: an ESRGAN and a compact Real-ESRGAN at x2, and a pickle."""
    root = tmp_path_factory.mktemp("upscaler-api-models")
    for model in tiny_models_dir.iterdir():
        (root / model.name).symlink_to(model, target_is_directory=model.is_dir())
    save_upscaler(root, "esrgan-x2", esrgan_state(2))
    save_upscaler(root, "anime/compact-x2", srvgg_state(2))
    torch.save(esrgan_state(2), root / "upscalers" / "pickled-x4.pth")
    return root


@pytest.fixture
def upscaler_client(make_client: Callable[..., TestClient], upscaler_models_dir: Path) -> TestClient:
    return make_client(models_dir=upscaler_models_dir)


def _png(client: TestClient, generation: dict[str, Any]) -> bytes:
    assert generation["status"] == "succeeded", generation
    response = client.get(f"/api/images/{generation['images'][0]['id']}")
    assert response.status_code == 200
    return response.content


def _upscale(client: TestClient, generation_id: int, wait: Wait, **body: Any) -> dict[str, Any]:
    response = client.post(f"/api/generations/{generation_id}/upscale", json=body)
    assert response.status_code == 202, response.text
    return wait(client, response.json()["id"])


def test_upscalers_are_listed_with_scale_and_architecture_and_pickles_are_not(upscaler_client: TestClient) -> None:
    response = upscaler_client.get("/api/upscalers")

    assert response.status_code == 200
    listed = {item["name"]: item for item in response.json()}
    assert set(listed) == {"esrgan-x2", "anime/compact-x2"}
    assert (listed["esrgan-x2"]["architecture"], listed["esrgan-x2"]["scale"]) == ("ESRGAN", 2)
    assert (listed["anime/compact-x2"]["architecture"], listed["anime/compact-x2"]["scale"]) == ("Compact", 2)
    assert listed["esrgan-x2"]["size"] > 0


def test_an_upscaler_network_enlarges_before_the_repaint_and_is_recorded(
    upscaler_client: TestClient, paint_job: Paint, wait_final: Wait
) -> None:
    source = paint_job(upscaler_client, seed=5)
    by_network = _upscale(upscaler_client, source["id"], wait_final, upscaler="esrgan-x2", strength=0.5, steps=2)
    by_lanczos = _upscale(upscaler_client, source["id"], wait_final, strength=0.5, steps=2)

    # Twice the size either way; the same seed and strength paint another picture from the network's enlargement.
    assert (by_network["width"], by_network["height"]) == (2 * source["width"], 2 * source["height"])
    network_png, lanczos_png = _png(upscaler_client, by_network), _png(upscaler_client, by_lanczos)
    network_pixels = np.asarray(Image.open(io.BytesIO(network_png)).convert("RGB"), dtype=np.int16)
    lanczos_pixels = np.asarray(Image.open(io.BytesIO(lanczos_png)).convert("RGB"), dtype=np.int16)
    assert network_pixels.shape == (2 * source["height"], 2 * source["width"], 3)
    assert np.abs(network_pixels - lanczos_pixels).mean() > 1

    # Recorded in the answer, the lineage edge and the PNG (ours and A1111's hires-fix key); Lanczos records none.
    assert (by_network["upscaler"], by_lanczos["upscaler"]) == ("esrgan-x2", None)
    lineage = upscaler_client.get(f"/api/generations/{by_network['id']}/lineage").json()
    edges = {child["id"]: child["edge"] for child in lineage["root"]["children"]}
    assert "upscaled x2 with esrgan-x2 from image" in " ".join(edges[by_network["id"]]["notes"])
    assert read_png_parameters(network_png)["upscaler"] == "esrgan-x2"
    assert "Hires upscaler: esrgan-x2" in _infotext(network_png)
    assert "upscaler" not in read_png_parameters(lanczos_png)


def test_a_named_upscaler_is_not_inherited_by_the_next_step(
    upscaler_client: TestClient, paint_job: Paint, wait_final: Wait
) -> None:
    source = paint_job(upscaler_client, seed=6)
    upscaled = _upscale(
        upscaler_client, source["id"], wait_final, upscaler="anime/compact-x2", scale=1.5, steps=2, strength=0.5
    )
    assert (upscaled["status"], upscaled["upscaler"], upscaled["width"]) == ("succeeded", "anime/compact-x2", 96)

    again = _upscale(upscaler_client, upscaled["id"], wait_final, scale=1.5, steps=2, strength=0.5)

    assert (again["status"], again["upscaler"]) == ("succeeded", None)


def _infotext(png: bytes) -> str:
    text: str = Image.open(io.BytesIO(png)).text[PARAMETERS_KEY]  # type: ignore[attr-defined]
    return text


@pytest.mark.parametrize(
    ("upscaler", "says"),
    [
        ("real-esrgan-x4", "unknown upscaler 'real-esrgan-x4'; available upscalers: anime/compact-x2, esrgan-x2"),
        ("pickled-x4", "is a pickle file, which the studio never loads"),
        ("../esrgan-x2", "unknown upscaler '../esrgan-x2'"),
        ("esrgan<x2>", "String should match pattern"),
        ("", "at least 1 character"),
    ],
)
def test_bad_upscaler_names_are_refused_with_422(
    upscaler_client: TestClient, paint_job: Paint, upscaler: str, says: str
) -> None:
    source = paint_job(upscaler_client)
    response = upscaler_client.post(f"/api/generations/{source['id']}/upscale", json={"upscaler": upscaler})
    assert response.status_code == 422, response.text
    assert says in response.text
