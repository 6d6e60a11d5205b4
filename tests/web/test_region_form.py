"""The studio form's regions: a hidden JSON field the region editor fills, read as the API reads ``regions``."""

from __future__ import annotations

import html
import json
from collections.abc import Callable

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Generation, Status
from tests.web.test_pages import count_generations, field_value, form, local_artist

BOAT = {"prompt": "a red boat", "box": [0.0, 0.0, 0.5, 1.0], "weight": 1.5}


def test_the_studio_offers_the_region_editor(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert 'name="regions"' in page.text and "data-region-editor hidden" in page.text
    assert "/static/js/region_editor.js" in page.text and "/static/css/regions.css" in page.text
    assert client.get("/static/js/region_editor.js").status_code == 200


def test_regions_from_the_form_are_recorded(client: TestClient, app: FastAPI, csrf: str) -> None:
    response = client.post(
        "/partials/generate", data={**form(regions=json.dumps([BOAT])), "csrf_token": csrf}, follow_redirects=False
    )
    assert response.status_code in (200, 303), response.text
    with app.state.session_factory() as session:
        [generation] = session.scalars(select(Generation)).all()
        assert [region.model_dump(mode="json") for region in generation.params.regions or []] == [BOAT]


def test_an_empty_regions_field_means_none(client: TestClient, app: FastAPI, csrf: str) -> None:
    client.post("/partials/generate", data={**form(regions=""), "csrf_token": csrf}, follow_redirects=False)
    with app.state.session_factory() as session:
        [generation] = session.scalars(select(Generation)).all()
        assert generation.params.regions is None


def test_bad_regions_in_the_form_are_refused_saying_why(client: TestClient, app: FastAPI, csrf: str) -> None:
    for regions, says in (
        ("a red boat on the left", "regions must be a JSON list"),
        (json.dumps([{"prompt": "", "box": [0, 0, 0.5, 1]}]), "at least 1 character"),
        (json.dumps([{"prompt": "a red boat", "box": [0.5, 0, 0.2, 1]}]), "0 &lt;= x0 &lt; x1 &lt;= 1"),
        (json.dumps([BOAT] * 5), "at most 4"),
    ):
        response = client.post("/partials/generate", data={**form(regions=regions), "csrf_token": csrf})
        assert says in response.text, (regions, response.text[:500])
    assert count_generations(app) == 0


def test_refining_a_regional_painting_fills_the_regions_field(
    client: TestClient, app: FastAPI, session: Session, make_generation: Callable[..., Generation]
) -> None:
    generation = make_generation(session, owner=local_artist(app), status=Status.SUCCEEDED, params={"regions": [BOAT]})
    page = client.get(f"/?refine={generation.id}").text
    value = field_value(page, "regions")
    assert value is not None and json.loads(html.unescape(value)) == [BOAT]


def test_a_painting_s_page_lists_its_regions(
    client: TestClient, app: FastAPI, session: Session, make_generation: Callable[..., Generation]
) -> None:
    regions = [BOAT, {"prompt": "a yellow sun", "mask_id": 7, "weight": 1.0}]
    generation = make_generation(session, owner=local_artist(app), status=Status.SUCCEEDED, params={"regions": regions})
    page = client.get(f"/generations/{generation.id}").text
    assert "&ldquo;a red boat&rdquo; in box 0, 0, 0.5, 1 &times;1.5</li>" in page
    assert '&ldquo;a yellow sun&rdquo; in mask <a href="/api/images/7">#7</a></li>' in page
