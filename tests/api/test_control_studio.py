"""The studio form's ControlNet guide: the picker is on the page, its field is read as the API reads
``control``, a refused guide queues nothing, and a refine carries the guide back into the form."""

from __future__ import annotations

import html
import io
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw
from sqlalchemy import func, select

from app.db.models import Generation
from tests.tiny_controlnet import build_tiny_controlnet
from tests.tiny_pipeline import TINY

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
CONTROL_VALUE = re.compile(r'<input type="hidden" id="control" name="control" value="([^"]*)"')


@pytest.fixture(scope="module")
def studio_control_models(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("studio-control-models")
    shutil.copytree(tiny_models_dir / TINY, root / TINY)
    build_tiny_controlnet(root / TINY, root / "controlnet" / "edges", seed=1)
    return root


@pytest.fixture
def studio(make_client: Callable[..., TestClient], studio_control_models: Path) -> TestClient:
    return make_client(models_dir=studio_control_models, start_workers=False)


def _csrf(client: TestClient) -> str:
    match = CSRF_INPUT.search(client.get("/").text)
    assert match
    return match.group(1)


def _upload(client: TestClient) -> int:
    image = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(image).rectangle((12, 12, 52, 52), outline="black", width=3)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    response = client.post("/api/uploads", files={"file": ("guide.png", buffer.getvalue(), "image/png")})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _form(client: TestClient, **fields: Any) -> dict[str, Any]:
    return {
        "prompt": "a red barn",
        "model": TINY,
        "steps": "2",
        "guidance": "5",
        "n_images": "1",
        "scheduler": "ddim",
        "csrf_token": _csrf(client),
        **fields,
    }


def _rows(app: FastAPI) -> list[Generation]:
    with app.state.session_factory() as session:
        return list(session.scalars(select(Generation)))


def test_the_studio_offers_the_controlnet_picker(studio: TestClient) -> None:
    page = studio.get("/")

    assert page.status_code == 200
    assert "data-control-picker" in page.text
    assert 'data-controlnets-url="/api/controlnets"' in page.text
    assert 'data-preview-url="/api/control/preview"' in page.text
    assert "/static/js/control_picker.js" in page.text and "/static/css/control.css" in page.text
    # The field starts empty and disabled: the script enables it when a ControlNet fits the model.
    assert CONTROL_VALUE.search(page.text) is not None
    assert studio.get("/static/js/control_picker.js").status_code == 200
    assert studio.get("/static/css/control.css").status_code == 200


def test_a_guide_from_the_studio_form_is_queued_and_carried_into_a_refine(studio: TestClient) -> None:
    image_id = _upload(studio)
    guide = [{"image_id": image_id, "kind": "scribble", "model": "edges", "weight": 0.75, "start": 0.1, "end": 0.9}]

    response = studio.post("/partials/generate", data=_form(studio, control=json.dumps(guide)))

    assert response.status_code == 200, response.text
    [row] = _rows(studio.app)  # type: ignore[arg-type]
    assert [unit.model_dump() for unit in row.params.control or []] == guide
    refine = studio.get("/", params={"refine": row.id})
    match = CONTROL_VALUE.search(refine.text)
    assert match is not None
    assert json.loads(html.unescape(match.group(1))) == guide


@pytest.mark.parametrize(
    ("control", "says"),
    [
        ('[{"image_id": IMAGE, "model": "missing"}]', "unknown ControlNet"),
        ('[{"image_id": IMAGE, "model": "edges", "kind": "depth"}]', "depth-estimation model"),
        ('[{"image_id": IMAGE, "model": "edges", "weight": 3}]', "less than or equal to 2"),
        ("canny please", "control must be a JSON list"),
    ],
)
def test_a_bad_guide_in_the_studio_form_queues_nothing(studio: TestClient, control: str, says: str) -> None:
    image_id = _upload(studio)

    response = studio.post("/partials/generate", data=_form(studio, control=control.replace("IMAGE", str(image_id))))

    assert says in html.unescape(response.text)
    with studio.app.state.session_factory() as session:  # type: ignore[attr-defined]
        assert session.scalar(select(func.count()).select_from(Generation)) == 0
