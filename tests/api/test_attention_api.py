"""Attention API: a painting's words with their maps, a heat map per word, refines from them, and
nothing for what the caller may not see."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Generation, ImageKind, Status, User
from app.db.models import Image as ImageRow
from app.services import attention, lineage

Paint = Callable[..., dict[str, Any]]


@pytest.fixture
def painted(client: TestClient, paint_job: Paint) -> dict[str, Any]:
    generation = paint_job(client, prompt="a red qzxv boat", seed=5)
    assert generation["status"] == "succeeded", generation
    return generation


def test_a_painting_answers_its_words_with_coverage_peak_and_a_heat_map(
    client: TestClient, painted: dict[str, Any]
) -> None:
    image = painted["images"][0]

    response = client.get(f"/api/images/{image['id']}/attention")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["available"] is True and body["prompt"] == "a red qzxv boat"
    assert [word["word"] for word in body["words"]] == ["a", "red", "qzxv", "boat"]
    for index, word in enumerate(body["words"]):
        assert word["index"] == index
        assert 0.0 <= word["coverage"] <= 1.0
        assert all(0.0 < fraction < 1.0 for fraction in word["peak"])
        heat = client.get(word["map_url"])
        assert heat.status_code == 200 and heat.headers["content-type"] == "image/png"
        picture = Image.open(io.BytesIO(heat.content))
        assert picture.mode == "RGBA" and picture.size == (image["width"], image["height"])
    # The most placed word's map lights where it landed and dims the rest of the picture.
    strongest = max(body["words"], key=lambda word: word["strength"])
    alpha = Image.open(io.BytesIO(client.get(strongest["map_url"]).content)).getchannel("A")
    assert alpha.getextrema()[0] < 100 and alpha.getextrema()[1] > 150


def test_a_refine_from_the_maps_weights_a_word_up_as_a_refine_step(
    client: TestClient, painted: dict[str, Any], session: Session
) -> None:
    image_id = painted["images"][0]["id"]

    response = client.post(f"/api/images/{image_id}/attention/refine", json={"how": "weight", "words": [2]})

    assert response.status_code == 202, response.text
    refined = client.get(response.json()["url"]).json()
    assert refined["prompt"] == "a red (qzxv:1.3) boat"
    assert refined["parent_id"] == painted["id"] and refined["seed"] == painted["seed"]
    child = session.get(Generation, refined["id"])
    assert child is not None and lineage.action_of(child) is not None
    assert lineage.action_of(child).value == "refine"

    earlier = client.post(f"/api/images/{image_id}/attention/refine", json={"how": "earlier", "words": [3]})
    assert earlier.status_code == 202, earlier.text
    assert client.get(earlier.json()["url"]).json()["prompt"] == "boat, a red qzxv"


def test_a_word_past_the_prompt_is_refused(client: TestClient, painted: dict[str, Any]) -> None:
    image_id = painted["images"][0]["id"]

    assert client.get(f"/api/images/{image_id}/attention/4.png").status_code == 404
    refused = client.post(f"/api/images/{image_id}/attention/refine", json={"how": "weight", "words": [7]})
    assert refused.status_code == 422
    assert "there is no word 7" in refused.json()["detail"]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/images/abc/attention", 422),
        ("/api/images/0/attention", 422),
        ("/api/images/999999/attention", 404),
        ("/api/images/999999/attention/0.png", 404),
        ("/api/images/1/attention/x.png", 422),
        ("/api/images/1/attention/-1.png", 422),
    ],
)
def test_bad_or_unknown_ids_are_refused(idle_client: TestClient, path: str, status: int) -> None:
    assert idle_client.get(path).status_code == status


@pytest.mark.parametrize(
    "body",
    [{"how": "louder"}, {"how": "weight", "words": []}, {"how": "weight", "words": [-1]}, {"how": "weight", "x": 1}],
)
def test_a_malformed_refine_is_refused_with_422(idle_client: TestClient, body: dict[str, Any]) -> None:
    assert idle_client.post("/api/images/1/attention/refine", json=body).status_code == 422


def _signed_in(make_client: Callable[..., TestClient], username: str) -> TestClient:
    """A client of a studio that requires accounts, signed in as a new artist, sending its CSRF token."""
    client = make_client(auth="required", start_workers=False)
    response = client.post("/api/auth/register", json={"username": username, "password": "a long enough password"})
    assert response.status_code == 201, response.text
    client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    return client


def test_someone_else_s_painting_and_its_maps_are_not_found(
    make_client: Callable[..., TestClient], session: Session, make_generation: Callable[..., Generation]
) -> None:
    alice, bob = _signed_in(make_client, "alice"), _signed_in(make_client, "bob")
    owner = session.scalars(select(User).where(User.username == "alice")).one()
    painting = make_generation(session, owner=owner, prompt="a red boat", status=Status.SUCCEEDED)
    store = alice.app.state.store  # type: ignore[attr-defined]
    png = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(png, format="PNG")
    stored = store.put_png(png.getvalue())
    maps = np.random.default_rng(0).random((3, 4, 4)).astype(np.float32)
    attention.save(
        store, stored.sha256, text="a red boat", words=["a", "red", "boat"], spans=[(0, 1), (2, 5), (6, 10)], maps=maps
    )
    theirs = ImageRow(
        sha256=stored.sha256,
        width=64,
        height=64,
        format="png",
        kind=ImageKind.OUTPUT,
        user_id=owner.id,
        generation_id=painting.id,
        index=0,
    )
    session.add(theirs)
    session.commit()

    assert alice.get(f"/api/images/{theirs.id}/attention").json()["available"] is True
    assert alice.get(f"/api/images/{theirs.id}/attention/2.png").status_code == 200
    for path in (f"/api/images/{theirs.id}/attention", f"/api/images/{theirs.id}/attention/0.png"):
        response = bob.get(path)
        assert response.status_code == 404, path
        assert f"image {theirs.id} not found" in response.text
    refine = bob.post(f"/api/images/{theirs.id}/attention/refine", json={"how": "weight", "words": [0]})
    assert refine.status_code == 404


def test_an_upload_says_its_maps_are_unavailable(idle_client: TestClient) -> None:
    png = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(png, format="PNG")
    upload = idle_client.post("/api/uploads", files={"file": ("red.png", png.getvalue(), "image/png")}).json()

    body = idle_client.get(f"/api/images/{upload['id']}/attention").json()

    assert body["available"] is False and body["words"] == []
    assert "uploaded" in body["reason"]
    assert idle_client.get(f"/api/images/{upload['id']}/attention/0.png").status_code == 404
