"""ControlNet through the API: the list, a guide's map, painting with a guide end to end, and what is refused."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo

from app.services import images, users
from app.services.metadata import parse_a1111, png_text_chunks, read_png_parameters
from tests.families.builders import FLUX, SD3, build_flux, build_sd3
from tests.tiny_controlnet import build_tiny_controlnet, build_tiny_flux_controlnet
from tests.tiny_pipeline import TINY

Paint = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def control_models_dir(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny`` with a ControlNet made from its UNet (``edges``), one whose config says SDXL (``xl-canny``),
    a tiny FLUX.1 model with a ControlNet made from its transformer (``flux-edges``) and a union one
    (``flux-union``), and a tiny SD3 model, whose family takes no ControlNet."""
    root = tmp_path_factory.mktemp("api-control-models")
    shutil.copytree(tiny_models_dir / TINY, root / TINY)
    build_tiny_controlnet(root / TINY, root / "controlnet" / "edges", seed=1)
    xl = root / "controlnet" / "xl-canny"
    xl.mkdir(parents=True)
    (xl / "config.json").write_text(
        json.dumps({"_class_name": "ControlNetModel", "cross_attention_dim": 2048, "addition_embed_type": "text_time"})
    )
    (xl / "diffusion_pytorch_model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    build_flux(root / FLUX)
    build_tiny_flux_controlnet(root / FLUX, root / "controlnet" / "flux-edges", seed=1)
    build_tiny_flux_controlnet(root / FLUX, root / "controlnet" / "flux-union", seed=2, union_modes=10)
    build_sd3(root / SD3)
    return root


@pytest.fixture
def control_client(make_client: Callable[..., TestClient], control_models_dir: Path) -> TestClient:
    return make_client(models_dir=control_models_dir)


@pytest.fixture
def idle_control_client(make_client: Callable[..., TestClient], control_models_dir: Path) -> TestClient:
    return make_client(models_dir=control_models_dir, start_workers=False)


def _guide() -> Image.Image:
    image = Image.new("RGB", (64, 64), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((12, 12, 52, 52), outline="black", width=3)
    draw.line((0, 0, 63, 63), fill="black", width=2)
    return image


def _upload(client: TestClient, picture: Image.Image) -> int:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    response = client.post("/api/uploads", files={"file": ("guide.png", buffer.getvalue(), "image/png")})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _png(client: TestClient, generation: dict[str, Any]) -> bytes:
    assert generation["status"] == "succeeded", generation
    [image] = generation["images"]
    response = client.get(f"/api/images/{image['id']}")
    assert response.status_code == 200
    return response.content


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def _prompt(**fields: Any) -> dict[str, Any]:
    return {"prompt": "a red barn", "steps": 2, "width": 64, "height": 64, "scheduler": "ddim", **fields}


def test_controlnets_are_listed_with_family_and_size(idle_control_client: TestClient, control_models_dir: Path) -> None:
    response = idle_control_client.get("/api/controlnets")

    assert response.status_code == 200
    listed = {item["name"]: item for item in response.json()}
    assert set(listed) == {"edges", "flux-edges", "flux-union", "xl-canny"}
    folder = control_models_dir / "controlnet" / "edges"
    assert listed["edges"] == {
        "name": "edges",
        "family": None,
        "size": sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()),
    }
    assert listed["xl-canny"]["family"] == "sdxl"
    assert listed["flux-edges"]["family"] == listed["flux-union"]["family"] == "flux"
    # Those that fit a model: tiny and FLUX.1 take their own; SD3 takes none; an unknown model is not found.
    fitting = idle_control_client.get("/api/controlnets", params={"model": TINY})
    assert [item["name"] for item in fitting.json()] == ["edges"]
    flux = idle_control_client.get("/api/controlnets", params={"model": FLUX})
    assert [item["name"] for item in flux.json()] == ["flux-edges", "flux-union"]
    assert idle_control_client.get("/api/controlnets", params={"model": SD3}).json() == []
    assert idle_control_client.get("/api/controlnets", params={"model": "nope"}).status_code == 404


def test_models_say_which_families_take_a_controlnet(idle_control_client: TestClient) -> None:
    models = {model["name"]: model for model in idle_control_client.get("/api/models").json()}

    assert models[TINY]["capabilities"]["controlnet"] is True
    assert models[FLUX]["capabilities"]["controlnet"] is True
    assert models[SD3]["capabilities"]["controlnet"] is False


def test_the_preview_is_the_canny_map_of_the_image(idle_control_client: TestClient) -> None:
    guide = _guide()
    image_id = _upload(idle_control_client, guide)

    response = idle_control_client.post("/api/control/preview", json={"image_id": image_id, "kind": "canny"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    shown = np.asarray(Image.open(io.BytesIO(response.content)).convert("L"))
    expected = cv2.Canny(cv2.cvtColor(np.asarray(guide), cv2.COLOR_RGB2GRAY), 100, 200)
    assert np.array_equal(shown, expected)
    sized = idle_control_client.post(
        "/api/control/preview", json={"image_id": image_id, "kind": "scribble", "width": 64, "height": 96}
    )
    assert sized.status_code == 200, sized.text
    assert Image.open(io.BytesIO(sized.content)).size == (64, 96)


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"kind": "depth"}, 422, "depth-estimation model"),
        ({"kind": "pose"}, 422, "kind"),
        ({"width": 60}, 422, "multiple of 8"),
        ({"image_id": 999_999}, 404, "image 999999 not found"),
    ],
)
def test_a_preview_refuses_what_it_cannot_show(
    idle_control_client: TestClient, body: dict[str, Any], status: int, says: str
) -> None:
    image_id = _upload(idle_control_client, _guide())

    response = idle_control_client.post("/api/control/preview", json={"image_id": image_id, "kind": "canny", **body})

    assert response.status_code == status, response.text
    assert says in response.text


def test_a_guide_paints_end_to_end_and_is_recorded(
    control_client: TestClient, paint_job: Paint, wait_final: Callable[..., dict[str, Any]]
) -> None:
    image_id = _upload(control_client, _guide())
    unit = {"image_id": image_id, "kind": "canny", "model": "edges", "weight": 1.0, "start": 0.0, "end": 1.0}

    plain = paint_job(control_client, seed=3)
    guided = paint_job(control_client, seed=3, control=[unit])
    zero = paint_job(control_client, seed=3, control=[{**unit, "weight": 0}])
    after = paint_job(control_client, seed=3)

    plain_pixels = _pixels(_png(control_client, plain))
    guided_png = _png(control_client, guided)
    assert np.abs(_pixels(guided_png) - plain_pixels).mean() > 1.0
    assert np.array_equal(_pixels(_png(control_client, zero)), plain_pixels)
    assert np.array_equal(_pixels(_png(control_client, after)), plain_pixels)

    # Recorded in the answer, in the PNG's studio JSON and in its A1111 infotext.
    assert guided["control"] == [unit]
    assert plain["control"] == []
    studio = read_png_parameters(guided_png)
    assert studio["control"] == [unit]
    infotext = Image.open(io.BytesIO(guided_png)).info["parameters"]
    assert 'ControlNet 0: "preprocessor: canny, model: edges, weight: 1, starting/ending: (0, 1)"' in infotext
    assert (
        parse_a1111(infotext)["ControlNet 0"] == "preprocessor: canny, model: edges, weight: 1, starting/ending: (0, 1)"
    )

    # A variation inherits the guide; the lineage edge names a change of weight.
    vary = control_client.post(f"/api/generations/{guided['id']}/vary", json={})
    assert vary.status_code == 202, vary.text
    assert wait_final(control_client, vary.json()["id"])["control"] == [unit]
    refined = paint_job(control_client, seed=3, parent_id=guided["id"], control=[{**unit, "weight": 0.5}])
    lineage = control_client.get(f"/api/generations/{refined['id']}/lineage").json()
    changes = json.dumps(lineage, ensure_ascii=False)
    assert "ControlNet" in changes and "canny edges at 1 (0–1) on image" in changes
    assert "canny edges at 0.5 (0–1) on image" in changes


def test_an_inpaint_job_takes_a_guide(control_client: TestClient, wait_final: Callable[..., dict[str, Any]]) -> None:
    source = _upload(control_client, Image.new("RGB", (64, 64), (40, 90, 200)))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 31, 63), fill=255)
    mask_id = _upload(control_client, mask.convert("RGB"))
    guide_id = _upload(control_client, _guide())
    body = {**_prompt(seed=5), "image_id": source, "mask_id": mask_id, "mask_blur": 0}

    unguided = control_client.post("/api/generate/inpaint", json=body)
    guided = control_client.post(
        "/api/generate/inpaint", json={**body, "control": [{"image_id": guide_id, "model": "edges"}]}
    )

    first = wait_final(control_client, unguided.json()["id"])
    second = wait_final(control_client, guided.json()["id"])
    assert second["control"][0]["kind"] == "canny"
    assert np.abs(_pixels(_png(control_client, second)) - _pixels(_png(control_client, first))).mean() > 0.3


def test_a_flux_guide_paints_end_to_end_and_is_recorded(
    control_client: TestClient, paint_job: Paint, wait_final: Callable[..., dict[str, Any]]
) -> None:
    image_id = _upload(control_client, _guide())
    unit = {"image_id": image_id, "kind": "canny", "model": "flux-edges", "weight": 1.0, "start": 0.0, "end": 1.0}
    flux = {"model": FLUX, "guidance": 3.5}

    plain = paint_job(control_client, seed=3, **flux)
    guided = paint_job(control_client, seed=3, control=[unit], **flux)
    zero = paint_job(control_client, seed=3, control=[{**unit, "weight": 0}], **flux)

    plain_pixels = _pixels(_png(control_client, plain))
    guided_png = _png(control_client, guided)
    assert np.abs(_pixels(guided_png) - plain_pixels).mean() > 1.0
    assert np.array_equal(_pixels(_png(control_client, zero)), plain_pixels)
    assert guided["control"] == [unit]
    assert read_png_parameters(guided_png)["control"] == [unit]
    infotext = Image.open(io.BytesIO(guided_png)).info["parameters"]
    assert 'ControlNet 0: "preprocessor: canny, model: flux-edges, weight: 1' in infotext


@pytest.mark.parametrize(
    ("unit", "says"),
    [
        ({"model": "edges"}, "ControlNet 'edges' is a UNet ControlNet; this model is FLUX.1"),
        ({"model": "flux-union", "kind": "scribble"}, "'flux-union' is a union ControlNet"),
    ],
)
def test_a_flux_model_refuses_a_guide_it_cannot_follow(
    idle_control_client: TestClient, unit: dict[str, Any], says: str
) -> None:
    image_id = _upload(idle_control_client, _guide())
    body = {**_prompt(model=FLUX), "control": [{"image_id": image_id, "kind": "canny", **unit}]}

    response = idle_control_client.post("/api/generate/prompt", json=body)

    assert response.status_code == 422, response.text
    assert says in response.text
    assert idle_control_client.get("/api/generations").json()["items"] == []


def _artist_with_someone_elses_image(client: TestClient) -> int:
    """Signs ``client`` in as an artist and returns the id of an image another artist uploaded."""
    app: FastAPI = client.app  # type: ignore[assignment]
    buffer = io.BytesIO()
    _guide().save(buffer, format="PNG")
    with app.state.session_factory() as session:
        users.create_user(session, username="ann", password="a long enough password")
        other = users.create_user(session, username="bob", password="another long password")
        row = images.create_upload(session, app.state.store, owner=other, data=buffer.getvalue(), max_pixels=2**24)
        theirs = int(row.id)
    login = client.post("/api/auth/login", json={"username": "ann", "password": "a long enough password"})
    assert login.status_code == 200, login.text
    client.headers["X-CSRF-Token"] = login.json()["csrf_token"]
    return theirs


def test_a_guide_from_someone_elses_image_is_refused(
    make_client: Callable[..., TestClient], control_models_dir: Path
) -> None:
    client = make_client(models_dir=control_models_dir, start_workers=False, auth="required")
    theirs = _artist_with_someone_elses_image(client)
    mine = _upload(client, _guide())
    unit = {"image_id": theirs, "kind": "canny", "model": "edges"}

    foreign = client.post("/api/generate/prompt", json=_prompt(control=[unit]))
    own = client.post("/api/generate/prompt", json=_prompt(control=[{**unit, "image_id": mine}]))
    preview = client.post("/api/control/preview", json={"image_id": theirs, "kind": "canny"})

    assert foreign.status_code == 422, foreign.text
    assert f"control: image {theirs} not found among your images" in foreign.text
    assert own.status_code == 202, own.text
    assert preview.status_code == 404


@pytest.mark.parametrize(
    ("unit", "says"),
    [
        (
            {"model": "missing"},
            "unknown ControlNet 'missing'; available ControlNets: edges, flux-edges, flux-union, xl-canny",
        ),
        ({"model": "xl-canny"}, "ControlNet 'xl-canny' is for the sdxl family"),
        ({"kind": "depth"}, "depth-estimation model"),
        ({"kind": "pose"}, "kind"),
        ({"weight": 2.5}, "less than or equal to 2"),
        ({"weight": -0.1}, "greater than or equal to 0"),
        ({"start": 1.2}, "less than or equal to 1"),
        ({"start": 0.6, "end": 0.4}, "end must come after its start"),
        ({"start": 0.5, "end": 0.5}, "end must come after its start"),
        ({"image_id": 0}, "greater than or equal to 1"),
        ({"image_id": 999_999}, "control: image 999999 not found among your images"),
        ({"strength": 1}, "Extra inputs are not permitted"),
        ({"model": "../edges"}, "should match pattern"),
    ],
)
def test_a_bad_guide_is_refused_with_the_reason(
    idle_control_client: TestClient, unit: dict[str, Any], says: str
) -> None:
    image_id = _upload(idle_control_client, _guide())
    body = _prompt(control=[{"image_id": image_id, "kind": "canny", "model": "edges", **unit}])

    response = idle_control_client.post("/api/generate/prompt", json=body)

    assert response.status_code == 422, response.text
    assert says in response.text
    assert idle_control_client.get("/api/generations").json()["items"] == []


def test_guides_are_refused_too_many_on_an_sd3_model_on_a_style_job_and_as_bad_text(
    idle_control_client: TestClient,
) -> None:
    mine = _upload(idle_control_client, _guide())
    unit = {"image_id": mine, "kind": "canny", "model": "edges"}

    too_many = idle_control_client.post("/api/generate/prompt", json=_prompt(control=[unit] * 4))
    sd3 = idle_control_client.post("/api/generate/prompt", json=_prompt(model=SD3, control=[unit]))
    style = idle_control_client.post("/api/generate/style", json={**_prompt(control=[unit]), "style_image_ids": [mine]})
    not_json = idle_control_client.post("/api/generate/prompt", json=_prompt(control="canny please"))

    assert too_many.status_code == 422 and "at most 3 items" in too_many.text
    assert sd3.status_code == 422 and "takes no ControlNet" in sd3.text
    assert style.status_code == 422 and "not style jobs" in style.text
    assert not_json.status_code == 422 and "JSON list" in not_json.text
    assert idle_control_client.get("/api/generations").json()["items"] == []


def test_an_a1111_infotext_reads_its_controlnet_units_back(idle_control_client: TestClient) -> None:
    params = {
        **_prompt(seed=4, guidance=7.0, model=TINY),
        "control": [
            {"image_id": 3, "kind": "canny", "model": "edges", "weight": 0.8, "start": 0.1, "end": 0.9},
            {"image_id": 4, "kind": "scribble", "model": "lines", "weight": 1.5, "start": 0.0, "end": 1.0},
        ],
    }
    infotext = png_text_chunks(params)["parameters"]
    png = io.BytesIO()
    info = PngInfo()
    info.add_text("parameters", infotext)  # only A1111's chunk, as another tool would write it
    Image.new("RGB", (8, 8)).save(png, format="PNG", pnginfo=info)

    read = read_png_parameters(png.getvalue())
    answered = idle_control_client.post("/api/parameters/read", files={"file": ("a.png", png.getvalue(), "image/png")})

    assert read["control"] == [
        {"kind": "canny", "model": "edges", "weight": 0.8, "start": 0.1, "end": 0.9},
        {"kind": "scribble", "model": "lines", "weight": 1.5, "start": 0.0, "end": 1.0},
    ]
    assert answered.status_code == 200, answered.text
    assert (
        answered.json()["extra"]["ControlNet 1"]
        == "preprocessor: scribble, model: lines, weight: 1.5, starting/ending: (0, 1)"
    )
