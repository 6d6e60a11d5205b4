"""The studio form's LoRAs: a text field the picker fills, read as the API reads ``loras``."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.db.models import Generation
from tests.web.test_pages import form


def test_the_studio_offers_the_lora_field_and_its_picker(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert 'name="loras"' in page.text and 'data-loras-url="/api/loras"' in page.text
    assert "/static/js/lora_picker.js" in page.text
    assert "(word:1.3)" in page.text  # the weighting syntax is explained beside the prompt


def test_an_unknown_lora_in_the_form_is_refused_with_its_name(client: TestClient, app: FastAPI, csrf: str) -> None:
    response = client.post("/partials/generate", data={**form(loras="ink:0.5"), "csrf_token": csrf})
    assert "unknown LoRA &#39;ink&#39;" in response.text or "unknown LoRA 'ink'" in response.text
    with app.state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Generation)) == 0


def test_a_lora_weight_out_of_range_is_refused(client: TestClient, app: FastAPI, csrf: str) -> None:
    response = client.post("/partials/generate", data={**form(loras="ink:3"), "csrf_token": csrf})
    assert "less than or equal to 2" in response.text
    with app.state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Generation)) == 0
