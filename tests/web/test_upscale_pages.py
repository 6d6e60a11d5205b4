"""The generation page's Upscale x2 button: a larger version recorded as an ``upscale`` step."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.db.models import Generation
from tests.web.test_lineage_pages import add

MakeGeneration = Callable[..., Generation]


def test_every_image_offers_upscale_x2(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration, csrf: str
) -> None:
    original = add(app, make_generation, prompt="a lighthouse", seed=10)
    page = client.get(f"/generations/{original}")
    assert page.status_code == 200
    assert f'action="/partials/generations/{original}/upscale"' in page.text
    assert 'name="image_index" value="0"' in page.text and "Upscale x2" in page.text


def test_upscale_button_paints_twice_the_size_as_an_upscale_step(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration, csrf: str
) -> None:
    original = add(app, make_generation, prompt="a lighthouse", seed=10)
    response = client.post(
        f"/partials/generations/{original}/upscale",
        data={"csrf_token": csrf, "image_index": "0"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    new_id = int(response.headers["location"].rsplit("/", 1)[1])
    with app.state.session_factory() as session:
        upscaled = session.get(Generation, new_id)
        assert upscaled is not None
        assert (upscaled.parent_id, upscaled.params.action, upscaled.params.upscale_scale) == (original, "upscale", 2.0)
        assert (upscaled.width, upscaled.height, upscaled.prompt) == (128, 128, "a lighthouse")
        assert upscaled.source_image_id is not None


def test_upscale_button_refuses_an_image_the_generation_lacks(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration, csrf: str
) -> None:
    original = add(app, make_generation, prompt="a lighthouse")
    for index, says in (("3", "out of range"), ("x", "image_index must be 0 to 7")):
        response = client.post(
            f"/partials/generations/{original}/upscale", data={"csrf_token": csrf, "image_index": index}
        )
        assert says in response.text
        assert response.status_code == 200  # a refused form is answered in place, as every form is
    with app.state.session_factory() as session:
        assert session.query(Generation).count() == 1
